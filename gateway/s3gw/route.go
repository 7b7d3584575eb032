package s3gw

import (
	"net/http"
	"net/url"
	"sort"
)

// operation is an S3 API action.
type operation struct {
	name string
	read bool // an anonymous request may do it on an anonymous bucket
	run  func(s *Server, w http.ResponseWriter, req *request) error
	// subresources are the query parameters of subresources (see
	// s3Subresources) that the operation takes.
	subresources []string
	// writes says the operation writes an object, so it takes
	// x-amz-storage-class (checkStorageClass).
	writes bool
}

// s3Subresources are the query parameters that name an S3 subresource or
// select an operation, rather than qualify one: a request carrying one
// that its operation does not take asks for something else than that
// operation (PUT /bucket?versioning is PutBucketVersioning, not
// CreateBucket; PUT /bucket/key?tagging is PutObjectTagging, not a
// PutObject of the tagging document; GET /bucket/key?versionId=v asks for
// a version this gateway does not keep). Such a request is answered
// NotImplemented and does nothing, whatever its method.
var s3Subresources = map[string]bool{
	"accelerate": true, "acl": true, "analytics": true, "attributes": true, "cors": true, "delete": true,
	"encryption": true, "intelligent-tiering": true, "inventory": true, "legal-hold": true, "lifecycle": true,
	"location": true, "logging": true, "metadataConfiguration": true, "metadataTable": true, "metrics": true,
	"notification": true, "object-lock": true, "ownershipControls": true, "partNumber": true, "policy": true,
	"policyStatus": true, "publicAccessBlock": true, "renameObject": true, "replication": true,
	"requestPayment": true, "restore": true, "retention": true, "select": true, "session": true, "tagging": true,
	"torrent": true, "uploadId": true, "uploads": true, "versionId": true, "versioning": true, "versions": true,
	"website": true,
}

// unexpectedSubresource returns the first (in name order) subresource of
// q that op does not take.
func unexpectedSubresource(op operation, q url.Values) (string, bool) {
	var extra []string
	for name := range q {
		if !s3Subresources[name] {
			continue
		}
		taken := false
		for _, s := range op.subresources {
			taken = taken || s == name
		}
		// versionId=null names the one version an unversioned object
		// has: the object itself.
		if !taken && !(name == "versionId" && q.Get(name) == "null") {
			extra = append(extra, name)
		}
	}
	if len(extra) == 0 {
		return "", false
	}
	sort.Strings(extra)
	return extra[0], true
}

// route maps a request to its operation.
func route(method, bucket, key string, q url.Values, h http.Header) operation {
	op := routeMethod(method, bucket, key, q, h)
	if op.name == "MethodNotAllowed" {
		return op
	}
	if sub, ok := unexpectedSubresource(op, q); ok {
		what := "the bucket subresource ?" + sub
		if key != "" {
			what = "the object subresource ?" + sub
		}
		return notImplemented(what)
	}
	return op
}

func notImplemented(what string) operation {
	return operation{name: "NotImplemented", run: func(*Server, http.ResponseWriter, *request) error {
		return s3err("NotImplemented", "%s is not implemented by the lakemesh S3 gateway", what)
	}}
}

// routeMethod maps a request to the operation its method, path and
// selecting subresource name; route then refuses it if it carries a
// subresource that operation does not take.
func routeMethod(method, bucket, key string, q url.Values, h http.Header) operation {
	notAllowed := operation{name: "MethodNotAllowed", run: func(_ *Server, _ http.ResponseWriter, req *request) error {
		return s3err("MethodNotAllowed", "the method %s is not allowed against this resource", req.Method)
	}}
	switch {
	case bucket == "":
		if method == http.MethodGet {
			return operation{name: "ListBuckets", run: (*Server).listBuckets}
		}
		return notAllowed
	case key == "":
		switch method {
		case http.MethodHead:
			return operation{name: "HeadBucket", read: true, run: (*Server).headBucket}
		case http.MethodGet:
			switch {
			case q.Has("uploads"):
				return operation{name: "ListMultipartUploads", run: (*Server).listUploads, subresources: []string{"uploads"}}
			case q.Has("location"):
				return operation{name: "GetBucketLocation", run: (*Server).bucketLocation, subresources: []string{"location"}}
			case q.Has("versioning"):
				return operation{name: "GetBucketVersioning", run: (*Server).bucketVersioning, subresources: []string{"versioning"}}
			case q.Get("list-type") == "2":
				return operation{name: "ListObjectsV2", read: true, run: (*Server).listObjectsV2}
			}
			return operation{name: "ListObjects", read: true, run: (*Server).listObjectsV1}
		case http.MethodPut:
			return operation{name: "CreateBucket", run: (*Server).createBucket}
		case http.MethodDelete:
			return operation{name: "DeleteBucket", run: (*Server).deleteBucket}
		case http.MethodPost:
			if q.Has("delete") {
				return operation{name: "DeleteObjects", run: (*Server).deleteObjects, subresources: []string{"delete"}}
			}
			return notImplemented("POST object upload (browser forms)")
		}
		return notAllowed
	}
	switch method {
	case http.MethodHead:
		return operation{name: "HeadObject", read: true, run: (*Server).headObject, subresources: []string{"partNumber"}}
	case http.MethodGet:
		if q.Has("uploadId") {
			return operation{name: "ListParts", run: (*Server).listParts, subresources: []string{"uploadId"}}
		}
		return operation{name: "GetObject", read: true, run: (*Server).getObject, subresources: []string{"partNumber"}}
	case http.MethodPut:
		copySource := h.Get("X-Amz-Copy-Source") != ""
		part := []string{"partNumber", "uploadId"}
		switch {
		case q.Has("partNumber") && q.Has("uploadId") && copySource:
			return operation{name: "UploadPartCopy", run: (*Server).uploadPartCopy, subresources: part}
		case q.Has("partNumber") && q.Has("uploadId"):
			return operation{name: "UploadPart", run: (*Server).uploadPart, subresources: part}
		case copySource:
			return operation{name: "CopyObject", run: (*Server).copyObject, writes: true}
		}
		return operation{name: "PutObject", run: (*Server).putObject, writes: true}
	case http.MethodPost:
		switch {
		case q.Has("uploads"):
			return operation{name: "CreateMultipartUpload", run: (*Server).createUpload, subresources: []string{"uploads"}, writes: true}
		case q.Has("uploadId"):
			return operation{name: "CompleteMultipartUpload", run: (*Server).completeUpload, subresources: []string{"uploadId"}}
		}
		return notImplemented("this POST")
	case http.MethodDelete:
		if q.Has("uploadId") {
			return operation{name: "AbortMultipartUpload", run: (*Server).abortUpload, subresources: []string{"uploadId"}}
		}
		return operation{name: "DeleteObject", run: (*Server).deleteObject}
	}
	return notAllowed
}
