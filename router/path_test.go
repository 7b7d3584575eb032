package router

import (
	"errors"
	"testing"

	"github.com/lakemesh/lakemesh/ufs"
)

func TestCleanNamespacePath(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		bad      bool
	}{
		{in: "/", want: "/"},
		{in: "/lake", want: "/lake"},
		{in: "/lake/s3-use1/", want: "/lake/s3-use1"},
		{in: "//lake//s3-use1/./a", want: "/lake/s3-use1/a"},
		{in: "/lake/s3-use1/dir with space/naïve.txt", want: "/lake/s3-use1/dir with space/naïve.txt"},
		{in: "lake/s3-use1", bad: true},
		{in: "", bad: true},
		{in: "/lake/../etc/passwd", bad: true},
		{in: "/lake/s3-use1/..", bad: true},
		{in: "/lake/a\x00b", bad: true},
	} {
		got, err := CleanNamespacePath(tc.in)
		if tc.bad {
			if !errors.Is(err, ufs.ErrInvalidPath) {
				t.Errorf("CleanNamespacePath(%q) = %q, %v; want ErrInvalidPath", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("CleanNamespacePath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func FuzzCleanNamespacePath(f *testing.F) {
	for _, s := range []string{"/", "/lake/a/../b", "//x/./y/", "rel", "/a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := CleanNamespacePath(in)
		if err != nil {
			return
		}
		// A clean path is absolute, has no empty, "." or ".." elements, and
		// cleaning it again changes nothing.
		if got[0] != '/' {
			t.Fatalf("%q -> %q: not absolute", in, got)
		}
		for _, el := range splitPath(got) {
			if el == "" || el == "." || el == ".." {
				t.Fatalf("%q -> %q: element %q", in, got, el)
			}
		}
		if again, err := CleanNamespacePath(got); err != nil || again != got {
			t.Fatalf("%q -> %q -> %q, %v: not idempotent", in, got, again, err)
		}
	})
}

func splitPath(p string) []string {
	if p == "/" {
		return nil
	}
	var out []string
	start := 1
	for i := 1; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return out
}
