package federation

import (
	"fmt"
	"path"
	"strings"
)

// pathProblem says what is wrong with a namespace path as written in
// topology.yaml, or "" when it is absolute and clean. Mount and policy
// paths are compared as strings, so they must be written in one form.
func pathProblem(p string) string {
	if hasControl(p) {
		return fmt.Sprintf("%q contains a control character; write a plain path such as /lake/name", p)
	}
	if !strings.HasPrefix(p, "/") {
		return fmt.Sprintf("%q is not absolute; write %q", p, path.Clean("/"+p))
	}
	if c := path.Clean(p); c != p {
		return fmt.Sprintf("%q is not clean; write %q", p, c)
	}
	return ""
}

// comparable returns the form of p used to check it against other paths
// after pathProblem has reported it: the cleaned path, so that one
// trailing slash is reported once and not again as "not under any mount".
func comparable(p string) (string, bool) {
	if !strings.HasPrefix(p, "/") || hasControl(p) {
		return "", false
	}
	return path.Clean(p), true
}

// Within says whether the slash-separated path p is prefix or below it at
// a "/" boundary: "/lake/a/b" is within "/lake/a", "/lake/ab" is not.
func Within(p, prefix string) bool {
	if prefix == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

// DirsAbove returns the directories above the namespace path p, nearest
// first, down to and including root, the path of p's mount: the
// directories whose listings a file's coming or going may change (on S3 a
// directory exists only while something is below it).
func DirsAbove(p, root string) []string {
	var dirs []string
	for d, prev := path.Dir(p), p; d != prev && Within(d, root); d, prev = path.Dir(d), d {
		dirs = append(dirs, d)
	}
	return dirs
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}
