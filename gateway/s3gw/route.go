package s3gw

import (
	"net/http"
	"net/url"
)

// operation is an S3 API action.
type operation struct {
	name string
	read bool // an anonymous request may do it on an anonymous bucket
	run  func(s *Server, w http.ResponseWriter, req *request) error
}

// Bucket subresources this gateway does not implement.
var unsupportedBucketQuery = []string{"accelerate", "acl", "analytics", "cors", "encryption", "intelligent-tiering", "inventory",
	"lifecycle", "logging", "metrics", "notification", "object-lock", "ownershipControls", "policy", "policyStatus",
	"publicAccessBlock", "replication", "requestPayment", "tagging", "versions", "website"}

// Object subresources this gateway does not implement.
var unsupportedObjectQuery = []string{"acl", "attributes", "legal-hold", "restore", "retention", "select", "tagging", "torrent"}

func hasAny(q url.Values, names []string) (string, bool) {
	for _, n := range names {
		if q.Has(n) {
			return n, true
		}
	}
	return "", false
}

// route maps a request to its operation.
func route(method, bucket, key string, q url.Values, h http.Header) operation {
	notImplemented := func(what string) operation {
		return operation{name: "NotImplemented", run: func(*Server, http.ResponseWriter, *request) error {
			return s3err("NotImplemented", "%s is not implemented by the lakemesh S3 gateway", what)
		}}
	}
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
		if sub, ok := hasAny(q, unsupportedBucketQuery); ok {
			return notImplemented("the bucket subresource ?" + sub)
		}
		switch method {
		case http.MethodHead:
			return operation{name: "HeadBucket", read: true, run: (*Server).headBucket}
		case http.MethodGet:
			switch {
			case q.Has("uploads"):
				return operation{name: "ListMultipartUploads", run: (*Server).listUploads}
			case q.Has("location"):
				return operation{name: "GetBucketLocation", run: (*Server).bucketLocation}
			case q.Has("versioning"):
				return operation{name: "GetBucketVersioning", run: (*Server).bucketVersioning}
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
				return operation{name: "DeleteObjects", run: (*Server).deleteObjects}
			}
			return notImplemented("POST object upload (browser forms)")
		}
		return notAllowed
	}
	if sub, ok := hasAny(q, unsupportedObjectQuery); ok {
		return notImplemented("the object subresource ?" + sub)
	}
	switch method {
	case http.MethodHead:
		return operation{name: "HeadObject", read: true, run: (*Server).headObject}
	case http.MethodGet:
		if q.Has("uploadId") {
			return operation{name: "ListParts", run: (*Server).listParts}
		}
		return operation{name: "GetObject", read: true, run: (*Server).getObject}
	case http.MethodPut:
		copySource := h.Get("X-Amz-Copy-Source") != ""
		switch {
		case q.Has("partNumber") && q.Has("uploadId") && copySource:
			return operation{name: "UploadPartCopy", run: (*Server).uploadPartCopy}
		case q.Has("partNumber") && q.Has("uploadId"):
			return operation{name: "UploadPart", run: (*Server).uploadPart}
		case copySource:
			return operation{name: "CopyObject", run: (*Server).copyObject}
		}
		return operation{name: "PutObject", run: (*Server).putObject}
	case http.MethodPost:
		switch {
		case q.Has("uploads"):
			return operation{name: "CreateMultipartUpload", run: (*Server).createUpload}
		case q.Has("uploadId"):
			return operation{name: "CompleteMultipartUpload", run: (*Server).completeUpload}
		}
		return notImplemented("this POST")
	case http.MethodDelete:
		if q.Has("uploadId") {
			return operation{name: "AbortMultipartUpload", run: (*Server).abortUpload}
		}
		return operation{name: "DeleteObject", run: (*Server).deleteObject}
	}
	return notAllowed
}
