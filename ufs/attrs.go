package ufs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Attrs are what a lake keeps with a file besides its bytes, as S3 keeps
// them with an object: the standard headers content-type,
// content-encoding, content-language, content-disposition, cache-control
// and expires, and user metadata as x-amz-meta-NAME; keys are lower-case
// header names.
//
// A nil and an empty Attrs are the same: no attrs. Validate says which sets
// every lake that implements AttrFS accepts.
type Attrs map[string]string

// UserAttrPrefix starts the keys of user metadata in Attrs.
const UserAttrPrefix = "x-amz-meta-"

// MaxUserAttrsSize bounds user metadata, as S3 bounds it: the lengths of
// the x-amz-meta-* keys (prefix included) and of their values, in UTF-8
// bytes, add up to at most this.
const MaxUserAttrsSize = 2 << 10

// standardAttrs are the standard headers an Attrs may hold, in the order
// error messages list them.
var standardAttrs = []string{"content-type", "content-encoding", "content-language", "content-disposition", "cache-control", "expires"}

// Errors of attrs.
var (
	// ErrInvalidAttrs: the attrs break a rule of Validate, or the lake
	// refused them as S3 would (too large, an expires S3 cannot keep).
	ErrInvalidAttrs = errors.New("invalid attrs")
	// ErrAttrsTooLarge: the user metadata is over MaxUserAttrsSize
	// (Validate). It wraps ErrInvalidAttrs.
	ErrAttrsTooLarge = fmt.Errorf("%w: user metadata too large", ErrInvalidAttrs)
	// ErrAttrsNotKept: the file system of a file:// lake keeps no user
	// extended attributes, or none as large as these attrs (ext4 keeps
	// about 4 KiB per file), so the lake cannot keep them.
	ErrAttrsNotKept = errors.New("attrs not kept by the lake's file system")
)

// AttrFS is implemented by lakes that keep Attrs with a file (s3, file).
// hdfs does not; callers find out with a type assertion.
//
// The contract, on top of FS's, which package ufstest checks:
//   - CreateAttrs checks attrs with Validate first and refuses a set it
//     does not pass with ErrInvalidAttrs, writing nothing. A lake may also
//     refuse attrs it cannot keep exactly: S3 refuses an expires that is
//     not an HTTP date (ErrInvalidAttrs naming the value; MinIO would drop
//     it) and passes on the store's MetadataTooLarge as ErrInvalidAttrs; a
//     file:// lake whose file system keeps no user extended attributes
//     refuses non-empty attrs with ErrAttrsNotKept. A refused or failed
//     CreateAttrs leaves the old content and the old attrs.
//   - The attrs replace the file's attrs as a whole, with its content:
//     keys the old file had and attrs lacks are gone. Empty attrs make
//     CreateAttrs a Create.
//   - Create (plain) leaves the file with no user metadata (x-amz-meta-*)
//     and no standard header it was given, with one exception: an object
//     store may report the content-type it defaulted. MinIO reports
//     "application/octet-stream" after a single PUT and
//     "binary/octet-stream" after a multipart upload.
//   - Rename keeps the file's attrs with it (on S3, both the single and the
//     multipart server-side copy carry them).
//   - StatAttrs returns the FileInfo and the attrs of one version: never
//     the new bytes' version with the old attrs or the reverse.
//   - Values come back as they were given, with two exceptions on S3: a
//     date in expires comes back in the IMF-fixdate form of RFC 9110
//     ("Wed, 21 Oct 2037 07:28:00 GMT"), and a user metadata value that is
//     itself an RFC 2047 encoded word ("=?UTF-8?q?...?=") comes back
//     decoded, as S3 decodes such values when it stores them.
//   - Version names the bytes, not the attrs: on S3 a CreateAttrs of the
//     same bytes with other attrs may keep the ETag, so a cache of attrs
//     cannot be keyed by Version alone.
type AttrFS interface {
	// CreateAttrs is Create that stores attrs with the new content,
	// atomically with it (readers never see the new bytes with the old
	// attrs or the reverse).
	CreateAttrs(ctx context.Context, path string, r io.Reader, attrs Attrs) (FileInfo, error)
	// StatAttrs is Stat that also returns the file's attrs (nil or empty
	// when it has none). A directory has none.
	StatAttrs(ctx context.Context, path string) (FileInfo, Attrs, error)
}

// Validate reports whether every lake that implements AttrFS can keep a,
// returning an error wrapping ErrInvalidAttrs that names the first bad key
// (in key order) and what is wrong with it. The rules:
//   - A key is one of the six standard headers or x-amz-meta-NAME, where
//     NAME is a non-empty HTTP header token (RFC 9110), all lower-case.
//   - A value is valid UTF-8 without control characters (tabs and line
//     breaks included) or leading or trailing spaces, which HTTP would
//     drop.
//   - A standard header's value is non-empty ASCII. User metadata values
//     may be empty, and may be any UTF-8: S3 carries non-ASCII ones RFC
//     2047-encoded.
//   - The x-amz-meta-* keys and values add up to at most MaxUserAttrsSize
//     bytes. (MinIO counts the RFC 2047-encoded values, so a set of
//     non-ASCII values near the limit can still be refused by the store,
//     with ErrInvalidAttrs.)
func (a Attrs) Validate() error {
	user := 0
	for _, k := range slices.Sorted(maps.Keys(a)) {
		v := a[k]
		if err := checkAttrKey(k); err != nil {
			return fmt.Errorf("attr %q: %w: %s", k, ErrInvalidAttrs, err)
		}
		if err := checkAttrValue(k, v); err != nil {
			return fmt.Errorf("attr %q: %w: value %q %s", k, ErrInvalidAttrs, v, err)
		}
		if strings.HasPrefix(k, UserAttrPrefix) {
			user += len(k) + len(v)
		}
	}
	if user > MaxUserAttrsSize {
		return fmt.Errorf("attrs: %w: the x-amz-meta-* keys and values add up to %d bytes, over the %d S3 allows", ErrAttrsTooLarge, user, MaxUserAttrsSize)
	}
	return nil
}

// Clone returns a copy of a that shares nothing with it (nil for nil).
func (a Attrs) Clone() Attrs { return maps.Clone(a) }

// checkAttrKey says what is wrong with a key, or nil.
func checkAttrKey(k string) error {
	if slices.Contains(standardAttrs, k) {
		return nil
	}
	lower := strings.ToLower(k)
	name, user := strings.CutPrefix(lower, UserAttrPrefix)
	switch {
	case !user && !slices.Contains(standardAttrs, lower):
		return fmt.Errorf("not a standard header (%s) or %sNAME", strings.Join(standardAttrs, ", "), UserAttrPrefix)
	case user && name == "":
		return fmt.Errorf("no NAME after %s", UserAttrPrefix)
	case user && !isToken(name):
		return fmt.Errorf("%q is not an HTTP header token", name)
	case lower != k:
		return errors.New("not lower-case")
	}
	return nil
}

// checkAttrValue says what is wrong with the value of key k, or nil.
func checkAttrValue(k, v string) error {
	if !utf8.ValidString(v) {
		return errors.New("is not valid UTF-8")
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return fmt.Errorf("has the control character %U", r)
		}
	}
	if strings.HasPrefix(v, " ") || strings.HasSuffix(v, " ") {
		return errors.New("starts or ends with a space, which HTTP drops")
	}
	if strings.HasPrefix(k, UserAttrPrefix) {
		return nil
	}
	if v == "" {
		return errors.New("is empty; leave the header out")
	}
	for i := 0; i < len(v); i++ {
		if v[i] >= utf8.RuneSelf {
			return fmt.Errorf("is not ASCII; only %s* values may be", UserAttrPrefix)
		}
	}
	return nil
}

// isToken reports whether s is an HTTP token (RFC 9110 section 5.6.2).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
