// Package s3gw serves the lakemesh namespace over the S3 API, so that
// standard S3 tools (the AWS SDKs and CLI, boto3, rclone, s3fs) read and
// write the lakes through the region's cache nodes. It owns the HTTP and
// S3 edge only: bucket mapping, request signing, S3 XML and error codes.
// Bytes and metadata go through a router.Namespace (a router.Client in
// production, routertest.Lakes in unit tests); HTTP statuses and S3 error
// codes never leave this package.
//
// # Buckets
//
// Every mount is a bucket named by the last element of its path:
// /lake/s3-use1 is bucket "s3-use1", and key "a/b/c" of it is the path
// /lake/s3-use1/a/b/c. The gateway refuses to start when two mounts give
// the same name or a name S3 clients cannot use. Mount buckets cannot be
// created or deleted over S3 (CreateBucket answers
// BucketAlreadyOwnedByYou, DeleteBucket AccessDenied).
//
// With a bucket directory (Config.BucketDir, e.g. /lake/s3-use1/buckets,
// which must be inside a writable mount), CreateBucket X makes the
// directory <bucket dir>/X, ListBuckets lists those directories too, and
// DeleteBucket removes one when it is empty (BucketNotEmpty otherwise).
// This is what lets S3 test suites, which create and drop their own
// buckets, run unchanged. Such buckets follow S3's naming rules for new
// buckets; a mount bucket of the same name wins.
//
// Keys map to paths one way only. A key whose elements are not plain
// names (empty, ".", "..", a NUL byte, the lake's temporary prefix, more
// than 255 bytes) is refused with InvalidArgument naming the key, never
// cleaned into another path, so no key reaches outside its bucket. Unicode,
// spaces and long keys (up to S3's 1024 bytes) work.
//
// A lake has directories where S3 has only keys. The gateway keeps S3's
// view: a key ending in "/" with an empty body is a directory (PutObject
// makes it, DeleteObject removes it when empty, HEAD and GET see an empty
// object); an empty directory lists as the key "d/", a directory with
// keys below it only through those keys; deleting the last key below a
// directory removes the directories it leaves empty (up to the bucket's
// root), as an S3 prefix vanishes with its last key. A key cannot be both
// an object and a prefix of other keys (InvalidArgument). An object's
// standard headers and user metadata (x-amz-meta-*) are stored with it in
// its lake (attrs.go); tags, ACLs and versions are not. A request that
// names a subresource its operation does not take (route.go) is
// NotImplemented, never another operation: PUT /bucket?versioning does not
// create the bucket, DELETE /bucket/key?versionId=v does not delete the
// object.
//
// # Checksums
//
// Uploads are verified while they stream (payload.go): the signed
// SHA-256, Content-MD5 and every x-amz-checksum-* algorithm S3 knows,
// as a header or a trailer; an unknown algorithm is refused, not
// ignored. A CompleteMultipartUpload's x-amz-checksum-* is the object's
// (objsum.go), FULL_OBJECT or COMPOSITE, checked as the parts are written
// to the lake. Replies state the checksums they verified; they are not
// stored with the object.
//
// # Listing
//
// ListObjectsV2 and ListObjects return keys in S3's byte order, with
// prefix, delimiter (any string), max-keys, start-after/marker and
// continuation tokens. A listing without a delimiter walks the directory
// tree page by page (see walk.go for how directory order becomes key
// order with bounded memory); with delimiter "/" it lists one directory.
// A continuation token carries the last key and, per directory level, the
// Namespace.List token to resume from; it is signed with a key derived
// from the credentials, so gateways sharing a credentials file accept each
// other's tokens.
//
// # Objects
//
// ETags are the lake's version of the file, quoted, everywhere (PUT, HEAD,
// GET, LIST, COPY, completion), so If-Match after a PUT works; parts'
// ETags are their MD5. GET and HEAD take Range (bytes=a-b, a-, -n;
// InvalidRange with Content-Range bytes */size past the end),
// If-Match, If-None-Match, If-Modified-Since and If-Unmodified-Since. A
// GET streams through pooled chunks of whole pages when the reader tells
// its page size (router.File does; 1 MiB otherwise), at page-aligned
// offsets, so the router reads each page from its node straight into a
// chunk with no copy through a page buffer of its own. Up to
// readAheadChunks chunks are held at once: the one the handler writes and
// those read meanwhile, in parallel, from the nodes that own them. A
// ranged GET passes its end to Reader.Limit before the first read, so
// readahead never fetches a page past the range, and its last chunk
// reads only the bytes of the range. PutObject is one Namespace.Put; CopyObject
// reads the source version and Puts it (across mounts too). When the node
// a key's writes go to is on the gateway's host and journals them
// (write_mode: back, or a lake homed in another region), the object is
// written into a journal file that node lends the gateway instead
// (router.LentSpool; putAttrs), and committed once the body verified: the
// bytes are copied once, into the journal, and never sent. A body that
// fails verification is never committed, and its file is removed.
//
// Multipart uploads spool their parts to files under Config.SpoolDir
// (mode 0700): a part is renamed into place, named by its number and MD5,
// once its body verified. Completion streams the named parts in order
// into one Namespace.Put, never holding an object in memory, and keeps a
// slow completion's connection alive with whitespace as S3 does. Upload
// IDs are 128 random bits. Abort removes the parts; uploads older than
// Config.UploadTTL are removed by a janitor. Parts live on one gateway's
// disk: a client must complete an upload through the gateway it began on.
//
// # Authentication
//
// Every request is checked with AWS Signature Version 4, implemented here
// (canonical request, string to sign, HMAC chain, constant-time compare):
// the Authorization header or a presigned URL (X-Amz-Expires up to 7
// days), clock skew up to 15 minutes, the signing region Config.Region
// (another region is AuthorizationHeaderMalformed naming the right one).
// Keys come from a credentials file (LoadCredentials: one "ACCESS_KEY_ID
// SECRET" pair per line, refused if group- or world-readable); every key
// may do everything.
//
// Older clients' Signature Version 2 is checked too (sigv2.go), against
// the same keys: "Authorization: AWS KeyID:Signature" (Date or x-amz-date
// within the same 15 minutes) and presigned URLs (AWSAccessKeyId, Expires,
// Signature). It is HMAC-SHA1 over the method, Content-MD5, Content-Type,
// date, x-amz-* headers and the path with its subresources; it signs no
// payload hash and no other query parameter, so a SigV2 body is checked
// only against the Content-MD5 or x-amz-checksum-* header its client
// signed, if any. It is accepted by
// default, as MinIO and Ceph accept it; Config.DisableSigV2 refuses it
// (InvalidRequest).
//
// Payloads are verified while they stream: a signed
// SHA-256, aws-chunked bodies with chunk signatures
// (STREAMING-AWS4-HMAC-SHA256-PAYLOAD, with or without signed trailers)
// or trailing checksums (STREAMING-UNSIGNED-PAYLOAD-TRAILER), Content-MD5
// and x-amz-checksum-* (crc32, crc32c, crc64nvme, sha1, sha256). A body
// that fails makes the Put fail, and nothing is written: the body's
// error cancels the Put's context before the writer sees it and never
// reads as an end of input. Unsigned requests are refused, except reads
// (GET, HEAD, listing) of buckets named in Config.Anonymous. Secrets are
// never logged; request logs name the access key ID only, and never log
// query strings (presigned URLs carry signatures).
//
// # Errors and limits
//
// Namespace errors map to S3 codes with errors.Is (errors.go holds the
// table of codes and statuses): ufs.ErrNotFound is NoSuchKey (NoSuchBucket
// for a bucket), ufs.ErrIsDir on a read NoSuchKey, cachenode.ErrReadOnly
// and ErrResidency AccessDenied, ufs.ErrInvalidPath InvalidArgument,
// ufs.ErrVersionChanged and router.ErrNoNode ServiceUnavailable (503).
// An error after a GET's status went out cuts the response short.
//
// Requests that move object bytes (GET and PUT bodies, parts, copies,
// completions) take one of Config.MaxTransfers slots; a GET holds at
// most readAheadChunks pooled chunks (a page each, at most 8 MiB), other
// transfers a few 1 MiB buffers, so memory stays bounded whatever the
// number of requests. A chunk whose pages a node on this host holds on
// disk (router.File.Section) is verified in place and goes through no
// chunk: to a client on another host from the page files with sendfile,
// with no copy in the gateway; to a client on this host written from
// the mapping it was verified in, one copy, which costs that client half
// of what sendfile's pages do (Config.DisableZeroCopy turns both off).
// Past a queue of 4*MaxTransfers, or 30 s of waiting, a request gets 503
// SlowDown. XML request bodies are read with size limits.
//
// # Concurrency
//
// A Server is safe for concurrent use. Its goroutines: the spool janitor
// (stopped by Close), per streaming GET one goroutine that starts chunk
// reads and one per chunk read in flight (at most readAheadChunks), and
// one keep-alive per completion, each owned and waited for by its
// request. Locks: spool.mu
// and keepAlive.mu are leaves; no call is made while holding either.
package s3gw
