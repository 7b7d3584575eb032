package s3gw

import (
	"strings"
	"unicode/utf8"

	"github.com/lakemesh/lakemesh/ufs"
)

const (
	// maxKeyLength is S3's limit on a key, in bytes.
	maxKeyLength = 1024
	// maxNameLength is the longest path element file systems take.
	maxNameLength = 255
)

// keyPath maps a key of the bucket at bucketPath to its namespace path.
// A key maps only if it names a path one way: its elements are separated
// by single slashes, none is empty, ".", ".." or one of the lake's
// temporary names, and it holds no NUL. A key ending in "/" is a
// directory marker (dir is true): the path of the directory. Anything
// else is refused with an error naming the key, never cleaned into some
// other path, so no key reaches outside its bucket.
func keyPath(bucketPath, key string) (p string, dir bool, err *apiError) {
	if key == "" {
		return "", false, s3err("InvalidArgument", "the key is empty")
	}
	if len(key) > maxKeyLength {
		return "", false, s3err("KeyTooLongError", "key of %d bytes is longer than the %d S3 allows", len(key), maxKeyLength)
	}
	if !utf8.ValidString(key) {
		return "", false, s3err("InvalidArgument", "key %q is not valid UTF-8", key)
	}
	if strings.ContainsRune(key, 0) {
		return "", false, s3err("InvalidArgument", "key %q holds a NUL byte, which no lake path can", key)
	}
	rel, dir := strings.CutSuffix(key, "/")
	for el := range strings.SplitSeq(rel, "/") {
		switch {
		case el == "":
			return "", false, s3err("InvalidArgument", "key %q has an empty path element (a leading slash or \"//\"), so it cannot map to a lake path", key)
		case el == "." || el == "..":
			return "", false, s3err("InvalidArgument", "key %q has a %q element, which is not allowed (keys never leave their bucket)", key, el)
		case strings.HasPrefix(el, ufs.TempPrefix):
			return "", false, s3err("InvalidArgument", "key %q has an element starting with %q, which the lake reserves for its temporary files", key, ufs.TempPrefix)
		case len(el) > maxNameLength:
			return "", false, s3err("KeyTooLongError", "key %q has an element of %d bytes; the lake takes at most %d per element", key, len(el), maxNameLength)
		}
	}
	return bucketPath + "/" + rel, dir, nil
}

// checkPrefix checks a listing prefix (or start-after key): it needs no
// mapping to a path, but it must be text a key could start with.
func checkPrefix(name, v string) *apiError {
	if len(v) > maxKeyLength {
		return s3err("KeyTooLongError", "%s of %d bytes is longer than the %d a key may have", name, len(v), maxKeyLength)
	}
	if !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
		return s3err("InvalidArgument", "%s %q is not valid UTF-8 text", name, v)
	}
	return nil
}
