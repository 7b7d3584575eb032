package testenv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// MinIOServer is a real MinIO server started for one test, on loopback ports,
// with random root credentials and its data in the test's temporary
// directory.
type MinIOServer struct {
	// Endpoint is the S3 endpoint URL, http://127.0.0.1:port.
	Endpoint string
	// Addr is the S3 endpoint's host:port.
	Addr      string
	AccessKey string
	SecretKey string
	// Region is what clients should sign for; MinIO accepts any.
	Region string
	// Pid is the server process's, for benchmarks that weigh its CPU time.
	Pid int

	clientOnce sync.Once
	client     *s3.Client
}

// minioStartTimeout bounds how long MinIO may take to become healthy; on a
// loaded two-core machine it takes a few seconds.
const minioStartTimeout = 30 * time.Second

// MinIO starts the minio binary (see Binary) and stops it when the test
// ends. Without the binary the test is skipped (or failed, in CI).
func MinIO(t testing.TB) *MinIOServer {
	t.Helper()
	bin := Binary(t, "minio")
	m := &MinIOServer{
		AccessKey: "lakemesh-" + strings.ToLower(rand.Text()[:12]),
		SecretKey: rand.Text(),
		Region:    "us-east-1",
	}
	// The ports were free a moment ago; if another process took one
	// meanwhile MinIO exits, and a second try with new ports settles it.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if lastErr = m.start(t, bin); lastErr == nil {
			return m
		}
		t.Logf("minio start attempt %d: %v", attempt+1, lastErr)
	}
	t.Fatalf("start minio: %v", lastErr)
	return nil
}

func (m *MinIOServer) start(t testing.TB, bin string) error {
	t.Helper()
	m.Addr = FreeAddr(t)
	m.Endpoint = "http://" + m.Addr
	base := t.TempDir()
	dataDir := filepath.Join(base, "data")
	logPath := filepath.Join(base, "minio.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()

	cmd := exec.Command(bin, "server", dataDir,
		"--address", m.Addr,
		"--console-address", FreeAddr(t),
		"--quiet")
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+m.AccessKey,
		"MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		// Its request counters (Requests) readable without a token.
		"MINIO_PROMETHEUS_AUTH_TYPE=public",
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", bin, err)
	}
	m.Pid = cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		cmd.Process.Kill()
		<-exited
	}

	deadline := time.Now().Add(minioStartTimeout)
	health := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := health.Get(m.Endpoint + "/minio/health/live")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("minio exited before it was healthy (%v); log:\n%s", err, tail(logPath))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("minio not healthy at %s after %v; log:\n%s", m.Endpoint, minioStartTimeout, tail(logPath))
		}
	}
	t.Cleanup(stop)
	return nil
}

// tail is the end of a log file, for error messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(b)
}

// Client is an S3 client for the server with its root credentials, for
// setting up and checking test data outside the code under test.
func (m *MinIOServer) Client() *s3.Client {
	m.clientOnce.Do(func() {
		m.client = s3.New(s3.Options{
			Region:       m.Region,
			BaseEndpoint: aws.String(m.Endpoint),
			UsePathStyle: true,
			Credentials:  credentials.NewStaticCredentialsProvider(m.AccessKey, m.SecretKey, ""),
		})
	})
	return m.client
}

// CreateBucket makes a bucket or fails the test.
func (m *MinIOServer) CreateBucket(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := m.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
}

// PutObject stores an object or fails the test.
func (m *MinIOServer) PutObject(t testing.TB, bucket, key string, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := m.Client().PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucket),
		Key:    aws.String(key),
		Body:   bytes.NewReader(data),
	})
	if err != nil {
		t.Fatalf("put s3://%s/%s: %v", bucket, key, err)
	}
}

// URI is the root URI of a lake on this server, for ufs.Open. It carries
// no credentials: pair it with SetEnv or Env.
func (m *MinIOServer) URI(bucket, prefix string) string {
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		prefix = "/" + prefix
	}
	return "s3://" + bucket + prefix + "?endpoint=" + m.Endpoint
}

// Requests is how many S3 requests of one API (as MinIO names them:
// "HeadObject", "GetObject", "ListObjectsV2", ...) the server has
// answered, from its own Prometheus counters (the v3 API group, which
// counts at once): counted below lakemesh.
func (m *MinIOServer) Requests(t testing.TB, api string) int64 {
	t.Helper()
	resp, err := http.Get(m.Endpoint + "/minio/metrics/v3/api/requests")
	if err != nil {
		t.Fatalf("minio metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("minio metrics: %s", resp.Status)
	}
	name := `name="` + api + `"`
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var n int64
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "minio_api_requests_total{") || !strings.Contains(line, name) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("minio metrics: %q: %v", line, err)
		}
		n += int64(v)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("minio metrics: %v", err)
	}
	return n
}

// Env is the environment a child process needs to reach this server
// through the standard AWS credential chain.
func (m *MinIOServer) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + m.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + m.SecretKey,
		"AWS_REGION=" + m.Region,
		// Nothing to find on a metadata service in a test; asking costs
		// seconds when there is none.
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// SetEnv sets Env in this process for the rest of the test, for adapters
// opened in-process. Like t.Setenv it cannot be used in parallel tests.
func (m *MinIOServer) SetEnv(t testing.TB) {
	t.Helper()
	// Clear what could override the environment credentials.
	for _, k := range []string{"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	for _, kv := range m.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}
