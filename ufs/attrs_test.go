package ufs_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/lakemesh/lakemesh/ufs"
)

func TestAttrsValidate(t *testing.T) {
	maxValue := strings.Repeat("v", ufs.MaxUserAttrsSize-len("x-amz-meta-k"))
	for _, tc := range []struct {
		name  string
		attrs ufs.Attrs
		want  string // in the error; "" for valid attrs
	}{
		{"nil", nil, ""},
		{"empty", ufs.Attrs{}, ""},
		{"every standard header", ufs.Attrs{
			"content-type": "text/plain; charset=utf-8", "content-encoding": "gzip", "content-language": "en",
			"content-disposition": `inline; filename="a b.txt"`, "cache-control": "no-cache", "expires": "Wed, 21 Oct 2037 07:28:00 GMT",
		}, ""},
		{"user metadata", ufs.Attrs{"x-amz-meta-a.b_c!#$%&'*+^`|~-9": "Grüße, 日本", "x-amz-meta-empty": ""}, ""},
		{"expires that is no date", ufs.Attrs{"expires": "0"}, ""}, // S3 keeps it; only the S3 adapter refuses it
		{"user metadata at the limit", ufs.Attrs{"x-amz-meta-k": maxValue}, ""},

		{"unknown header", ufs.Attrs{"x-custom": "v"}, `attr "x-custom": invalid attrs: not a standard header`},
		{"other x-amz header", ufs.Attrs{"x-amz-storage-class": "STANDARD"}, `"x-amz-storage-class": invalid attrs: not a standard header`},
		{"upper-case standard header", ufs.Attrs{"Content-Type": "text/plain"}, `"Content-Type": invalid attrs: not lower-case`},
		{"upper-case user key", ufs.Attrs{"X-Amz-Meta-Name": "v"}, `"X-Amz-Meta-Name": invalid attrs: not lower-case`},
		{"user key without a name", ufs.Attrs{"x-amz-meta-": "v"}, `"x-amz-meta-": invalid attrs: no NAME`},
		{"space in a name", ufs.Attrs{"x-amz-meta-two words": "v"}, `"two words" is not an HTTP header token`},
		{"colon in a name", ufs.Attrs{"x-amz-meta-a:b": "v"}, `is not an HTTP header token`},
		{"non-ASCII name", ufs.Attrs{"x-amz-meta-größe": "v"}, `is not an HTTP header token`},
		{"line break in a value", ufs.Attrs{"content-type": "text/plain\r\nx-amz-meta-smuggled: 1"}, `"content-type": invalid attrs: value "text/plain\r\nx-amz-meta-smuggled: 1" has the control character U+000D`},
		{"tab in a value", ufs.Attrs{"x-amz-meta-a": "a\tb"}, `has the control character U+0009`},
		{"DEL in a value", ufs.Attrs{"x-amz-meta-a": "a\x7f"}, `has the control character U+007F`},
		{"C1 control in a value", ufs.Attrs{"x-amz-meta-a": "a\u0085"}, `has the control character U+0085`},
		{"invalid UTF-8", ufs.Attrs{"x-amz-meta-a": "a\xffb"}, `is not valid UTF-8`},
		{"leading space", ufs.Attrs{"x-amz-meta-a": " a"}, `starts or ends with a space`},
		{"trailing space", ufs.Attrs{"cache-control": "no-cache "}, `starts or ends with a space`},
		{"empty standard header", ufs.Attrs{"content-language": ""}, `"content-language": invalid attrs: value "" is empty`},
		{"non-ASCII standard header", ufs.Attrs{"content-disposition": `attachment; filename="日本.txt"`}, `is not ASCII`},
		{"user metadata over the limit", ufs.Attrs{"x-amz-meta-k": maxValue + "v"}, "add up to 2049 bytes, over the 2048 S3 allows"},
		{"user metadata over the limit in many keys", ufs.Attrs{"x-amz-meta-a": maxValue[:1100], "x-amz-meta-b": maxValue[:1100]}, "add up to 2224 bytes"},
		{"first bad key in key order", ufs.Attrs{"x-b": "v", "x-a": "v"}, `attr "x-a"`},
	} {
		err := tc.attrs.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want == "":
		case !errors.Is(err, ufs.ErrInvalidAttrs):
			t.Errorf("%s: %v, want an error wrapping ErrInvalidAttrs", tc.name, err)
		case !strings.Contains(err.Error(), tc.want):
			t.Errorf("%s: %v, want it to say %q", tc.name, err, tc.want)
		}
	}
}

func TestAttrsClone(t *testing.T) {
	if ufs.Attrs(nil).Clone() != nil {
		t.Error("clone of nil attrs is not nil")
	}
	a := ufs.Attrs{"content-type": "text/plain"}
	c := a.Clone()
	c["content-type"] = "image/png"
	c["x-amz-meta-a"] = "b"
	if len(a) != 1 || a["content-type"] != "text/plain" {
		t.Errorf("changing a clone changed the original: %q", a)
	}
}
