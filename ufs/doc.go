// Package ufs holds the under-file-system adapters: the code that talks to
// the lakes where data already lives (plain directories, S3 and
// S3-compatible buckets, HDFS) and makes them all look like one small file
// system interface, FS.
//
// # The contract
//
// FS has seven operations: Stat, List, ReadRange, Create, Mkdir, Delete and
// Rename. Every one takes a context and stops when it is cancelled, and is
// safe to repeat after a timeout. Paths are relative to the lake's root,
// slash-separated, and go through CleanPath, which refuses ".." and NUL
// bytes (ErrInvalidPath) rather than resolving them: no path can name
// anything outside the root. Callers branch on a few sentinel errors
// (ErrNotFound, ErrNotDir, ErrIsDir, ErrNotEmpty, ErrVersionChanged,
// ErrInvalidPath), always wrapped with the operation and the full location,
// checked with errors.Is. Store-specific errors (errno values, S3 error codes
// and HTTP statuses, Java exception names) are mapped here and go no
// further.
//
// List is paged, because lake directories hold millions of entries: at most
// limit entries per call, resumed with an opaque token, in the store's own
// stable order (name order for files and HDFS, key order for S3). A page
// may be short, even empty, before the end; only an empty Next ends a
// listing. ReadRange reads exactly [off, off+n), asking the store for that
// range and no more: a cache node fetches pages, not files. Create is atomic
// (readers see the old content or the new, never a part): a temporary file
// renamed into place on file:// and hdfs://, a single or multipart upload
// on S3, which publishes the object only when it is complete.
//
// The full contract is written on FS, and package ufstest checks it against
// every adapter: file:// always, S3 against a real MinIO, HDFS when a
// namenode is named in LAKEMESH_TEST_HDFS.
//
// # Attributes
//
// Besides its bytes, a file can have Attrs: the standard headers S3 keeps
// with an object (content-type, content-encoding, content-language,
// content-disposition, cache-control, expires) and user metadata
// (x-amz-meta-NAME), so a front end can store and return them. Lakes that
// keep them implement the optional interface AttrFS, found by a type
// assertion: S3 keeps them on the object (non-ASCII user metadata values
// RFC 2047-encoded, as S3 wants them); file:// keeps them as JSON in one
// extended attribute, user.lakemesh.attrs, set on the temporary file
// before the rename, so bytes and attrs are published together; hdfs://
// keeps none. Attrs.Validate holds the rules every such lake accepts,
// S3's limits among them; attrs a lake refuses wrap ErrInvalidAttrs, and a
// file system that keeps no extended attributes fails with
// ErrAttrsNotKept. A plain Create leaves a file without attrs,
// Rename keeps them, and Version names the bytes, not the attrs.
//
// # Versions, and why a read names one
//
// Every file has a Version: the ETag on S3; mtime, size and file identity
// (inode, HDFS file id) on file:// and hdfs://. The cache stores pages under
// (path, version, page number), and reads a page from the lake with the
// version it expects. If the file has changed since, ReadRange returns
// ErrVersionChanged instead of bytes: the caller re-stats and starts over
// with the new version. This is what keeps a cache from ever mixing pages of
// two versions of a file. On file:// the version is checked on the very
// descriptor the bytes are then read from; on S3 the GET carries If-Match;
// on HDFS the path is re-checked once the reader has located its blocks.
// Writers that bypass ufs and change a file in place, keeping its size
// within one mtime tick, are the limit of what mtime-based versions can see.
//
// # Registration
//
// Each adapter registers an Opener for its URI scheme in its init function
// (the only init functions in the package), and callers open lakes with
// Open(ctx, uri): they never switch on the scheme. Root URIs:
//
//	file:///abs/dir                       an existing local directory
//	s3://bucket/optional/prefix           AWS S3, region from the standard chain
//	s3://bucket/p?endpoint=http://h:9000  any S3-compatible store, path-style
//	hdfs://namenode:8020/warehouse        HDFS; hdfs:///p takes the namenode from HADOOP_CONF_DIR
//
// S3 also takes region= and path_style=; unknown options are refused, so a
// typo fails loudly.
//
// # Path safety
//
// Beyond CleanPath, the file:// adapter does every access through an
// os.Root, so a symlink inside the lake cannot lead outside it either; such
// symlinks (and dangling ones) are left out of listings. On S3, keys that no
// clean path can name ("a//b", "a/./b") are skipped by List.
//
// # Credentials
//
// Credentials never appear in a root URI or in topology.yaml: a URI with a
// user or password is refused. The S3 adapter uses the AWS SDK's standard
// chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE and the
// shared files, web identity, instance roles; AWS_ENDPOINT_URL_S3 and
// AWS_CA_BUNDLE work too). HDFS acts as HADOOP_USER_NAME, else the current
// user; Kerberos is not supported yet. String() of an FS is therefore safe
// to log.
//
// # What ufs does not know
//
// ufs knows nothing of the mesh: no regions, lines, caches, budgets or
// policies. It imports no other lakemesh package, and the packages above it
// (cachenode, router, transfer) decide when a lake is read and what is kept.
package ufs
