package s3gw

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/lakemesh/lakemesh/router"
	"github.com/lakemesh/lakemesh/ufs"
)

// buckets maps bucket names to namespace paths: every mount is a bucket
// named by its path's last element, and, with a bucket directory, every
// directory directly below it whose name is a valid bucket name is one
// too (mount buckets win a name clash).
type buckets struct {
	mounts map[string]string // bucket name -> mount path
	names  []string          // mount bucket names, sorted
	dir    string            // bucket directory; "" when there is none
}

func newBuckets(mountPaths []string, bucketDir string) (*buckets, error) {
	b := &buckets{mounts: map[string]string{}}
	for _, mp := range mountPaths {
		clean, err := router.CleanNamespacePath(mp)
		if err != nil || clean == "/" {
			return nil, fmt.Errorf("mount path %q is not a namespace path like /lake/name", mp)
		}
		name := path.Base(clean)
		if problem := mountBucketProblem(name); problem != "" {
			return nil, fmt.Errorf("mount %s gives bucket name %q, which S3 clients cannot use: %s", clean, name, problem)
		}
		if other, dup := b.mounts[name]; dup {
			return nil, fmt.Errorf("mounts %s and %s both give bucket name %q; every mount's last path element must be unique to serve them over S3", other, clean, name)
		}
		b.mounts[name] = clean
		b.names = append(b.names, name)
	}
	if len(b.names) == 0 {
		return nil, errors.New("no mounts to serve as buckets")
	}
	slices.Sort(b.names)
	if bucketDir != "" {
		clean, err := router.CleanNamespacePath(bucketDir)
		if err != nil {
			return nil, fmt.Errorf("bucket directory %q: %w", bucketDir, err)
		}
		inside := false
		for _, mp := range b.mounts {
			inside = inside || strings.HasPrefix(clean, mp+"/")
		}
		if !inside {
			return nil, fmt.Errorf("bucket directory %s is not inside a mount; give a directory below one of %s", clean, strings.Join(b.sortedPaths(), ", "))
		}
		b.dir = clean
	}
	return b, nil
}

func (b *buckets) sortedPaths() []string {
	var ps []string
	for _, n := range b.names {
		ps = append(ps, b.mounts[n])
	}
	return ps
}

// path returns the namespace path of a bucket name and whether it is a
// mount bucket. ok is false when the name can be no bucket at all; a
// bucket-directory bucket may still not exist (the caller stats it).
func (b *buckets) path(name string) (p string, mount, ok bool) {
	if mp, found := b.mounts[name]; found {
		return mp, true, true
	}
	if b.dir != "" && createdBucketProblem(name) == "" {
		return b.dir + "/" + name, false, true
	}
	return "", false, false
}

// mountBucketProblem checks a bucket name taken from a mount path. The
// operator chose these, so they follow the relaxed rules S3 clients
// accept in path-style requests (1 to 63 of a-z, 0-9, '.', '-', '_',
// starting and ending with a letter or digit).
func mountBucketProblem(name string) string {
	if len(name) < 1 || len(name) > 63 {
		return "a bucket name has 1 to 63 characters"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return "a bucket name has only lowercase letters, digits, '.', '-' and '_'"
		}
	}
	if !alnum(name[0]) || !alnum(name[len(name)-1]) {
		return "a bucket name starts and ends with a letter or digit"
	}
	return ""
}

// createdBucketProblem checks the name of a bucket a client creates
// against S3's rules for new buckets.
func createdBucketProblem(name string) string {
	if len(name) < 3 || len(name) > 63 {
		return "a bucket name has 3 to 63 characters"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return "a bucket name has only lowercase letters, digits, '.' and '-'"
		}
	}
	switch {
	case !alnum(name[0]) || !alnum(name[len(name)-1]):
		return "a bucket name starts and ends with a letter or digit"
	case strings.Contains(name, ".."):
		return "a bucket name has no two adjacent periods"
	case net.ParseIP(name) != nil:
		return "a bucket name is not an IP address"
	case strings.HasPrefix(name, "xn--"), strings.HasPrefix(name, "sthree-"), strings.HasSuffix(name, "-s3alias"), strings.HasSuffix(name, "--ol-s3"):
		return "the name uses a prefix or suffix S3 reserves"
	}
	return ""
}

func alnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// bucketPath resolves a request's bucket to its namespace path. Mount
// buckets always exist; a bucket-directory bucket is stated, so a write
// never creates a bucket by the way.
func (s *Server) bucketPath(ctx context.Context, name string) (string, error) {
	p, mount, ok := s.buckets.path(name)
	if !ok {
		return "", s3err("NoSuchBucket", "the specified bucket does not exist")
	}
	if mount {
		return p, nil
	}
	e, err := s.ns.Stat(ctx, p)
	if err != nil {
		return "", toAPIError(err, targetBucket, "")
	}
	if !e.IsDir {
		return "", s3err("NoSuchBucket", "the specified bucket does not exist")
	}
	return p, nil
}

// bucketExists resolves a bucket after a Namespace call on one of its
// keys failed with ErrNotFound: it tells NoSuchBucket from NoSuchKey
// without a stat on the paths that succeed.
func (s *Server) keyNotFound(ctx context.Context, bucket, key string) error {
	if _, err := s.bucketPath(ctx, bucket); err != nil {
		return err
	}
	return noSuchKey(key)
}

type bucketEntry struct {
	Name         string
	CreationDate string
}

type listAllMyBucketsResult struct {
	XMLName xml.Name      `xml:"http://s3.amazonaws.com/doc/2006-03-01/ ListAllMyBucketsResult"`
	Owner   owner         `xml:"Owner"`
	Buckets []bucketEntry `xml:"Buckets>Bucket"`
}

type owner struct {
	ID          string
	DisplayName string
}

var gatewayOwner = owner{ID: "lakemesh", DisplayName: "lakemesh"}

func (s *Server) listBuckets(w http.ResponseWriter, req *request) error {
	ctx := req.Context()
	out := listAllMyBucketsResult{Owner: gatewayOwner}
	for _, name := range s.buckets.names {
		created := s.started
		if e, err := s.ns.Stat(ctx, s.buckets.mounts[name]); err == nil && !e.ModTime.IsZero() {
			created = e.ModTime
		} else if err != nil && !errors.Is(err, ufs.ErrNotFound) {
			return toAPIError(err, targetBucket, "")
		}
		out.Buckets = append(out.Buckets, bucketEntry{Name: name, CreationDate: xmlTime(created)})
	}
	if s.buckets.dir != "" {
		token := ""
		for {
			entries, next, err := s.ns.List(ctx, s.buckets.dir, token, 0)
			if err != nil {
				return toAPIError(err, targetBucket, "")
			}
			for _, e := range entries {
				name := e.Name()
				if !e.IsDir || createdBucketProblem(name) != "" || s.buckets.mounts[name] != "" {
					continue
				}
				created := e.ModTime
				if created.IsZero() {
					created = s.started
				}
				out.Buckets = append(out.Buckets, bucketEntry{Name: name, CreationDate: xmlTime(created)})
			}
			if next == "" {
				break
			}
			token = next
		}
		slices.SortFunc(out.Buckets, func(a, b bucketEntry) int { return strings.Compare(a.Name, b.Name) })
	}
	return writeXML(w, http.StatusOK, out)
}

func (s *Server) headBucket(w http.ResponseWriter, req *request) error {
	p, err := s.bucketPath(req.Context(), req.bucket)
	if err != nil {
		return err
	}
	if _, err := s.ns.Stat(req.Context(), p); err != nil {
		return toAPIError(err, targetBucket, "")
	}
	w.Header().Set("x-amz-bucket-region", s.cfg.Region)
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) bucketLocation(w http.ResponseWriter, req *request) error {
	if _, err := s.bucketPath(req.Context(), req.bucket); err != nil {
		return err
	}
	type locationConstraint struct {
		XMLName xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ LocationConstraint"`
		Region  string   `xml:",chardata"`
	}
	region := s.cfg.Region
	if region == "us-east-1" {
		region = "" // S3's way of saying us-east-1
	}
	return writeXML(w, http.StatusOK, locationConstraint{Region: region})
}

func (s *Server) bucketVersioning(w http.ResponseWriter, req *request) error {
	if _, err := s.bucketPath(req.Context(), req.bucket); err != nil {
		return err
	}
	type versioningConfiguration struct {
		XMLName xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ VersioningConfiguration"`
	}
	return writeXML(w, http.StatusOK, versioningConfiguration{})
}

// createBucket makes a directory under the bucket directory. A
// CreateBucketConfiguration body may name a location; only the gateway's
// region is accepted.
func (s *Server) createBucket(w http.ResponseWriter, req *request) error {
	ctx := req.Context()
	name := req.bucket
	if _, isMount := s.buckets.mounts[name]; isMount {
		return s3err("BucketAlreadyOwnedByYou", "bucket %q is the mount %s, which already exists", name, s.buckets.mounts[name])
	}
	if s.buckets.dir == "" {
		return s3err("AccessDenied", "buckets are this gateway's mounts (%s); start it with --bucket-dir to let clients create buckets", strings.Join(s.buckets.names, ", "))
	}
	if problem := createdBucketProblem(name); problem != "" {
		return s3err("InvalidBucketName", "bucket name %q: %s", name, problem)
	}
	// A bucket asked for with object lock must not be made without it:
	// the client would take its objects for protected.
	if v := req.Header.Get("X-Amz-Bucket-Object-Lock-Enabled"); strings.EqualFold(strings.TrimSpace(v), "true") {
		return s3err("NotImplemented", "object lock (x-amz-bucket-object-lock-enabled) is not implemented by the lakemesh S3 gateway")
	}
	body, err := s.smallBody(req, 64<<10)
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		var conf struct {
			LocationConstraint string
		}
		if err := xml.Unmarshal(body, &conf); err != nil {
			return s3err("MalformedXML", "CreateBucketConfiguration is not valid XML: %v", err)
		}
		if loc := conf.LocationConstraint; loc != "" && loc != s.cfg.Region && !(loc == "US" && s.cfg.Region == "us-east-1") {
			return s3err("InvalidArgument", "location constraint %q is not this gateway's region %q", loc, s.cfg.Region)
		}
	}
	p := s.buckets.dir + "/" + name
	if e, err := s.ns.Stat(ctx, p); err == nil {
		if e.IsDir {
			return s3err("BucketAlreadyOwnedByYou", "bucket %q already exists", name)
		}
		return s3err("BucketAlreadyExists", "%s exists and is a file", p)
	} else if !errors.Is(err, ufs.ErrNotFound) {
		return toAPIError(err, targetBucket, "")
	}
	if err := s.ns.Mkdir(ctx, p); err != nil {
		return toAPIError(err, targetWrite, "")
	}
	s.log.Info("bucket created", "bucket", name, "path", p, "access_key", req.accessKey())
	w.Header().Set("Location", "/"+name)
	w.WriteHeader(http.StatusOK)
	return nil
}

// deleteBucket removes an empty bucket-directory bucket.
func (s *Server) deleteBucket(w http.ResponseWriter, req *request) error {
	ctx := req.Context()
	name := req.bucket
	if mp, isMount := s.buckets.mounts[name]; isMount {
		return s3err("AccessDenied", "bucket %q is the mount %s; mounts are not deleted over S3", name, mp)
	}
	p, err := s.bucketPath(ctx, name)
	if err != nil {
		return err
	}
	entries, _, err := s.ns.List(ctx, p, "", 1)
	if err != nil {
		return toAPIError(err, targetBucket, "")
	}
	if len(entries) > 0 {
		return s3err("BucketNotEmpty", "bucket %q is not empty (it holds %s)", name, entries[0].Name())
	}
	if err := s.ns.Remove(ctx, p); err != nil {
		if errors.Is(err, ufs.ErrNotFound) {
			return s3err("NoSuchBucket", "the specified bucket does not exist")
		}
		return toAPIError(err, targetBucket, "")
	}
	s.log.Info("bucket deleted", "bucket", name, "path", p, "access_key", req.accessKey())
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// smallBody reads a request body that must be small (XML documents),
// verified like any other body.
func (s *Server) smallBody(req *request, limit int64) ([]byte, error) {
	return s.smallBodyOf(req, limit, true)
}

// smallBodyOf is smallBody; bodyChecksums is decodeBody's.
func (s *Server) smallBodyOf(req *request, limit int64, bodyChecksums bool) ([]byte, error) {
	body, err := s.decodeBody(req, nil, bodyChecksums)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, s3err("InvalidRequest", "the request body is larger than the %d bytes this operation takes", limit)
	}
	return b, nil
}

// xmlTime is S3's timestamp form in XML replies.
func xmlTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
