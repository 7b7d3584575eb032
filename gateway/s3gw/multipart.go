package s3gw

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// minPartSize is the smallest part but the last that S3 completes.
	minPartSize = 5 << 20
	// maxPartSize is the largest part S3 takes.
	maxPartSize = 5 << 30
	// maxPartNumber is the highest part number.
	maxPartNumber = 10000
)

// keepAliveAfter is how long a completion may take before the reply's
// status goes out and whitespace keeps the connection busy, as S3 does:
// clients with read timeouts (awscli's 60 s) would give up on a large
// completion otherwise. Variables so tests can shorten them.
var (
	keepAliveAfter = 2 * time.Second
	keepAliveEvery = 10 * time.Second
)

type initiateMultipartUploadResult struct {
	XMLName  xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ InitiateMultipartUploadResult"`
	Bucket   string
	Key      string
	UploadID string `xml:"UploadId"`
}

func (s *Server) createUpload(w http.ResponseWriter, req *request) error {
	bucketPath, err := s.bucketPath(req.Context(), req.bucket)
	if err != nil {
		return err
	}
	_, dir, aerr := keyPath(bucketPath, req.key)
	if aerr != nil {
		return aerr
	}
	if dir {
		return s3err("InvalidArgument", "key %q ends in \"/\", a directory in the lake, which holds no bytes to upload", req.key)
	}
	attrs, aerr := requestAttrs(req.Header)
	if aerr != nil {
		return aerr
	}
	up, err := s.spool.create(req.bucket, req.key, attrs, time.Now())
	if err != nil {
		return err
	}
	s.log.Debug("multipart upload created", "upload", up.ID, "bucket", req.bucket, "key", req.key)
	return writeXML(w, http.StatusOK, initiateMultipartUploadResult{Bucket: req.bucket, Key: req.key, UploadID: up.ID})
}

// upload finds the request's upload and checks it belongs to the bucket
// and key the request names.
func (s *Server) upload(req *request) (uploadInfo, error) {
	id := req.query.Get("uploadId")
	up, err := s.spool.get(id)
	if err != nil {
		return uploadInfo{}, err
	}
	if up.Bucket != req.bucket || up.Key != req.key {
		return uploadInfo{}, noSuchUpload(id)
	}
	return up, nil
}

func partNumber(v string) (int, *apiError) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxPartNumber {
		return 0, s3err("InvalidArgument", "part number %q must be an integer between 1 and %d", v, maxPartNumber)
	}
	return n, nil
}

func (s *Server) uploadPart(w http.ResponseWriter, req *request) error {
	n, aerr := partNumber(req.query.Get("partNumber"))
	if aerr != nil {
		return aerr
	}
	up, err := s.upload(req)
	if err != nil {
		return err
	}
	if req.ContentLength > maxPartSize {
		return s3err("EntityTooLarge", "a part holds at most 5 GiB")
	}
	release, err := s.acquire(req.Context())
	if err != nil {
		return err
	}
	defer release()
	body, err := s.body(req, nil)
	if err != nil {
		return err
	}
	sum, size, err := s.spool.writePart(up.ID, n, body)
	if berr := body.failure(); berr != nil {
		return berr
	}
	if err != nil {
		return err
	}
	if size > maxPartSize {
		return s3err("EntityTooLarge", "a part holds at most 5 GiB")
	}
	w.Header().Set("ETag", `"`+sum+`"`)
	_ = body.echoChecksums(w.Header())
	w.WriteHeader(http.StatusOK)
	return nil
}

type copyPartResult struct {
	XMLName      xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ CopyPartResult"`
	LastModified string
	ETag         string
}

func (s *Server) uploadPartCopy(w http.ResponseWriter, req *request) error {
	ctx := req.Context()
	n, aerr := partNumber(req.query.Get("partNumber"))
	if aerr != nil {
		return aerr
	}
	up, err := s.upload(req)
	if err != nil {
		return err
	}
	src, _, srcKey, err := s.copySource(ctx, req)
	if err != nil {
		return err
	}
	if src.IsDir {
		return s3err("InvalidRequest", "the copy source %q is a directory", srcKey)
	}
	start, end := int64(0), src.Size
	if rng := req.Header.Get("X-Amz-Copy-Source-Range"); rng != "" {
		var partial bool
		var aerr *apiError
		start, end, partial, aerr = parseRange(rng, src.Size)
		if aerr != nil {
			return aerr
		}
		if !partial {
			return s3err("InvalidArgument", "x-amz-copy-source-range %q must be bytes=first-last", rng)
		}
	}
	if end-start > maxPartSize {
		return s3err("EntityTooLarge", "a part holds at most 5 GiB")
	}
	rd, done, err := s.openRead(ctx, src, srcKey)
	if err != nil {
		return err
	}
	defer done()
	rd.Limit(end)
	sum, _, err := s.spool.writePart(up.ID, n, &sectionReader{ctx: ctx, rd: rd, off: start, end: end})
	if err != nil {
		return toAPIError(err, targetRead, srcKey)
	}
	return writeXML(w, http.StatusOK, copyPartResult{LastModified: xmlTime(time.Now()), ETag: `"` + sum + `"`})
}

type completeMultipartUpload struct {
	Parts []struct {
		PartNumber int
		ETag       string
	} `xml:"Part"`
}

type completeMultipartUploadResult struct {
	XMLName           xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ CompleteMultipartUploadResult"`
	Location          string
	Bucket            string
	Key               string
	ETag              string
	ChecksumCRC32     string `xml:",omitempty"`
	ChecksumCRC32C    string `xml:",omitempty"`
	ChecksumCRC64NVME string `xml:",omitempty"`
	ChecksumMD5       string `xml:",omitempty"`
	ChecksumSHA1      string `xml:",omitempty"`
	ChecksumSHA256    string `xml:",omitempty"`
	ChecksumSHA512    string `xml:",omitempty"`
	ChecksumXXHASH64  string `xml:",omitempty"`
	ChecksumXXHASH3   string `xml:",omitempty"`
	ChecksumXXHASH128 string `xml:",omitempty"`
	ChecksumType      string `xml:",omitempty"`
}

// setChecksum states the object checksum the completion verified.
func (r *completeMultipartUploadResult) setChecksum(sum *checksummedParts) {
	if sum == nil {
		return
	}
	v := sum.value()
	field := map[string]*string{
		"crc32": &r.ChecksumCRC32, "crc32c": &r.ChecksumCRC32C, "crc64nvme": &r.ChecksumCRC64NVME,
		"md5": &r.ChecksumMD5, "sha1": &r.ChecksumSHA1, "sha256": &r.ChecksumSHA256, "sha512": &r.ChecksumSHA512,
		"xxhash64": &r.ChecksumXXHASH64, "xxhash3": &r.ChecksumXXHASH3, "xxhash128": &r.ChecksumXXHASH128,
	}[sum.c.name]
	if field != nil {
		*field, r.ChecksumType = v, sum.kind
	}
}

// completeUpload streams the named parts, in order, into one Put of the
// object, then removes the upload.
func (s *Server) completeUpload(w http.ResponseWriter, req *request) error {
	ctx := req.Context()
	up, err := s.upload(req)
	if err != nil {
		return err
	}
	objSum, aerr := parseObjectChecksum(req.Header)
	if aerr != nil {
		return aerr
	}
	body, err := s.smallBodyOf(req, 4<<20, false)
	if err != nil {
		return err
	}
	var in completeMultipartUpload
	if err := xml.Unmarshal(body, &in); err != nil {
		return s3err("MalformedXML", "the CompleteMultipartUpload document is not valid XML: %v", err)
	}
	if len(in.Parts) == 0 {
		return s3err("MalformedXML", "you must specify at least one part")
	}
	parts := make([]partInfo, 0, len(in.Parts))
	for i, p := range in.Parts {
		if i > 0 && p.PartNumber <= in.Parts[i-1].PartNumber {
			return s3err("InvalidPartOrder", "the list of parts was not in ascending order: part %d follows part %d", p.PartNumber, in.Parts[i-1].PartNumber)
		}
		sum := strings.ToLower(strings.Trim(strings.TrimSpace(p.ETag), `"`))
		part, ok := s.spool.findPart(up.ID, p.PartNumber, sum)
		if !ok {
			return s3err("InvalidPart", "part %d with ETag %s was not uploaded (or its ETag differs)", p.PartNumber, p.ETag)
		}
		parts = append(parts, part)
	}
	var total int64
	for i, p := range parts {
		if i < len(parts)-1 && p.size < minPartSize {
			return s3err("EntityTooSmall", "part %d is %d bytes; every part but the last must be at least 5 MiB", p.number, p.size)
		}
		total += p.size
	}
	unlock, ok := s.spool.lock(up.ID)
	if !ok {
		return s3err("OperationAborted", "another completion or abort of upload %s is in progress", up.ID)
	}
	defer unlock()
	bucketPath, err := s.bucketPath(ctx, req.bucket)
	if err != nil {
		return err
	}
	p, _, aerr := keyPath(bucketPath, req.key)
	if aerr != nil {
		return aerr
	}
	release, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer release()

	ka := startKeepAlive(w)
	putCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr := &partsReader{ctx: putCtx, parts: parts}
	defer pr.Close()
	var src io.Reader = pr
	var sum *checksummedParts
	if objSum != nil {
		sizes := make([]int64, len(parts))
		for i, p := range parts {
			sizes[i] = p.size
		}
		sum = newChecksummedParts(pr, objSum, sizes)
		src = sum
	}
	in2 := &failFast{r: src, cancel: cancel}
	e, err := s.putAttrs(putCtx, p, in2, up.Attrs)
	if err == nil && e.Size != total {
		err = fmt.Errorf("complete %s: the lake stored %d bytes of %d", p, e.Size, total)
	}
	if in2.err != nil {
		err = in2.err
	}
	var reply any
	if err != nil {
		ae := toAPIError(err, targetWrite, req.key)
		if !ka.stop() {
			return ae
		}
		// The 200 is out: the error goes in the body, where S3 clients
		// look for it in a CompleteMultipartUpload reply.
		s.log.Warn("multipart completion failed after its reply started", "upload", up.ID, "code", ae.Code, "err", ae.Message)
		reply = errorReply{Code: ae.Code, Message: ae.Message, Key: req.key, BucketName: req.bucket, Resource: req.URL.Path, RequestID: req.id}
	} else {
		if err := s.spool.remove(up.ID); err != nil {
			s.log.Warn("completed upload's parts not removed", "upload", up.ID, "err", err)
		}
		s.log.Info("multipart upload completed", "upload", up.ID, "path", p, "parts", len(parts), "bytes", total)
		result := completeMultipartUploadResult{Location: "/" + req.bucket + "/" + req.key, Bucket: req.bucket, Key: req.key, ETag: etagOf(e)}
		result.setChecksum(sum)
		reply = result
		if !ka.stop() {
			return writeXML(w, http.StatusOK, reply)
		}
	}
	var b bytes.Buffer
	if err := xml.NewEncoder(&b).Encode(reply); err != nil {
		return err
	}
	_, err = w.Write(b.Bytes())
	return err
}

// keepAlive sends a reply's status and then a space now and then while a
// long operation runs.
type keepAlive struct {
	w       http.ResponseWriter
	mu      sync.Mutex // guards started, stopped; held while writing
	started bool
	stopped bool
	done    chan struct{}
	wg      sync.WaitGroup
}

func startKeepAlive(w http.ResponseWriter) *keepAlive {
	ka := &keepAlive{w: w, done: make(chan struct{})}
	ka.wg.Add(1)
	go ka.run()
	return ka
}

func (ka *keepAlive) run() {
	defer ka.wg.Done()
	t := time.NewTimer(keepAliveAfter)
	defer t.Stop()
	for {
		select {
		case <-ka.done:
			return
		case <-t.C:
		}
		ka.mu.Lock()
		if !ka.stopped {
			if !ka.started {
				ka.w.Header().Set("Content-Type", "application/xml")
				ka.w.WriteHeader(http.StatusOK)
				ka.w.Write([]byte(xml.Header))
				ka.started = true
			} else {
				ka.w.Write([]byte(" "))
			}
			http.NewResponseController(ka.w).Flush()
		}
		ka.mu.Unlock()
		t.Reset(keepAliveEvery)
	}
}

// stop ends the keep-alive and reports whether the status is out.
func (ka *keepAlive) stop() bool {
	ka.mu.Lock()
	ka.stopped = true
	started := ka.started
	ka.mu.Unlock()
	close(ka.done)
	ka.wg.Wait()
	return started
}

func (s *Server) abortUpload(w http.ResponseWriter, req *request) error {
	up, err := s.upload(req)
	if err != nil {
		return err
	}
	unlock, ok := s.spool.lock(up.ID)
	if !ok {
		return s3err("OperationAborted", "a completion of upload %s is in progress", up.ID)
	}
	defer unlock()
	if err := s.spool.remove(up.ID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type partEntry struct {
	PartNumber   int
	LastModified string
	ETag         string
	Size         int64
}

type listPartsResult struct {
	XMLName              xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ ListPartsResult"`
	Bucket               string
	Key                  string
	UploadID             string `xml:"UploadId"`
	Initiator            owner
	Owner                owner
	StorageClass         string
	PartNumberMarker     int
	NextPartNumberMarker int
	MaxParts             int
	IsTruncated          bool
	Parts                []partEntry `xml:"Part"`
}

func (s *Server) listParts(w http.ResponseWriter, req *request) error {
	up, err := s.upload(req)
	if err != nil {
		return err
	}
	maxParts, marker := 1000, 0
	if v := req.query.Get("max-parts"); v != "" {
		if maxParts, err = strconv.Atoi(v); err != nil || maxParts < 0 {
			return s3err("InvalidArgument", "max-parts %q is not a non-negative integer", v)
		}
		maxParts = min(maxParts, 1000)
	}
	if v := req.query.Get("part-number-marker"); v != "" {
		if marker, err = strconv.Atoi(v); err != nil || marker < 0 {
			return s3err("InvalidArgument", "part-number-marker %q is not a non-negative integer", v)
		}
	}
	parts, err := s.spool.parts(up.ID)
	if err != nil {
		return err
	}
	out := listPartsResult{Bucket: up.Bucket, Key: up.Key, UploadID: up.ID, Initiator: gatewayOwner, Owner: gatewayOwner,
		StorageClass: "STANDARD", PartNumberMarker: marker, MaxParts: maxParts}
	for _, p := range parts {
		if p.number <= marker {
			continue
		}
		if len(out.Parts) == maxParts {
			out.IsTruncated = true
			break
		}
		out.Parts = append(out.Parts, partEntry{PartNumber: p.number, LastModified: xmlTime(p.modTime), ETag: `"` + p.md5 + `"`, Size: p.size})
		out.NextPartNumberMarker = p.number
	}
	return writeXML(w, http.StatusOK, out)
}

type uploadEntry struct {
	Key          string
	UploadID     string `xml:"UploadId"`
	Initiator    owner
	Owner        owner
	StorageClass string
	Initiated    string
}

type listMultipartUploadsResult struct {
	XMLName            xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ ListMultipartUploadsResult"`
	Bucket             string
	KeyMarker          string
	UploadIDMarker     string `xml:"UploadIdMarker"`
	NextKeyMarker      string `xml:",omitempty"`
	NextUploadIDMarker string `xml:"NextUploadIdMarker,omitempty"`
	Prefix             string
	Delimiter          string `xml:",omitempty"`
	MaxUploads         int
	IsTruncated        bool
	EncodingType       string         `xml:",omitempty"`
	Uploads            []uploadEntry  `xml:"Upload"`
	CommonPrefixes     []commonPrefix `xml:",omitempty"`
}

// listUploads lists a bucket's uploads in progress, by key, then by
// upload ID; with a delimiter, the keys that hold it after the prefix
// are rolled up into common prefixes, as ListObjects does. With
// encoding-type=url, keys and prefixes in the reply are URL-encoded.
func (s *Server) listUploads(w http.ResponseWriter, req *request) error {
	if _, err := s.bucketPath(req.Context(), req.bucket); err != nil {
		return err
	}
	q := req.query
	prefix, delim, keyMarker, idMarker := q.Get("prefix"), q.Get("delimiter"), q.Get("key-marker"), q.Get("upload-id-marker")
	maxUploads := 1000
	if v := q.Get("max-uploads"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return s3err("InvalidArgument", "max-uploads %q is not a non-negative integer", v)
		}
		maxUploads = min(n, 1000)
	}
	encode, encodingType, aerr := parseEncodingType(q)
	if aerr != nil {
		return aerr
	}
	all, err := s.spool.list()
	if err != nil {
		return err
	}
	all = slices.DeleteFunc(all, func(u uploadInfo) bool { return u.Bucket != req.bucket || !strings.HasPrefix(u.Key, prefix) })
	slices.SortFunc(all, func(a, b uploadInfo) int {
		if c := strings.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	out := listMultipartUploadsResult{Bucket: req.bucket, KeyMarker: encode(keyMarker), UploadIDMarker: idMarker, Prefix: encode(prefix),
		Delimiter: encode(delim), MaxUploads: maxUploads, EncodingType: encodingType}
	var nextKey, nextID string
	for _, u := range all {
		if keyMarker != "" && (u.Key < keyMarker || u.Key == keyMarker && (idMarker == "" || u.ID <= idMarker)) {
			continue
		}
		if delim != "" && strings.HasSuffix(keyMarker, delim) && strings.HasPrefix(u.Key, keyMarker) && len(keyMarker) > len(prefix) {
			continue // under the common prefix the previous page ended with
		}
		rolled := ""
		if delim != "" {
			if i := strings.Index(u.Key[len(prefix):], delim); i >= 0 {
				rolled = u.Key[:len(prefix)+i+len(delim)]
			}
		}
		if rolled != "" && len(out.CommonPrefixes) > 0 && out.CommonPrefixes[len(out.CommonPrefixes)-1].Prefix == encode(rolled) {
			continue // the prefix is listed already
		}
		if len(out.Uploads)+len(out.CommonPrefixes) == maxUploads {
			out.IsTruncated = true
			out.NextKeyMarker, out.NextUploadIDMarker = encode(nextKey), nextID
			break
		}
		if rolled != "" {
			out.CommonPrefixes = append(out.CommonPrefixes, commonPrefix{Prefix: encode(rolled)})
			nextKey, nextID = rolled, "" // the next page starts past it
			continue
		}
		out.Uploads = append(out.Uploads, uploadEntry{Key: encode(u.Key), UploadID: u.ID, Initiator: gatewayOwner, Owner: gatewayOwner,
			StorageClass: "STANDARD", Initiated: xmlTime(u.Initiated)})
		nextKey, nextID = u.Key, u.ID
	}
	return writeXML(w, http.StatusOK, out)
}
