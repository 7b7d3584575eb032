package testenv

import (
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestMinIO(t *testing.T) {
	m := MinIO(t)
	m.CreateBucket(t, "bucket")
	m.PutObject(t, "bucket", "dir/key", []byte("hello"))
	out, err := m.Client().GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String("bucket"), Key: aws.String("dir/key")})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	defer out.Body.Close()
	if b, err := io.ReadAll(out.Body); err != nil || string(b) != "hello" {
		t.Fatalf("get = %q, %v", b, err)
	}
	if got, want := m.URI("bucket", "/dir/"), "s3://bucket/dir?endpoint="+m.Endpoint; got != want {
		t.Fatalf("URI = %q, want %q", got, want)
	}
	if len(m.Env()) == 0 || m.AccessKey == "" || m.SecretKey == "" {
		t.Fatal("no credentials")
	}
}
