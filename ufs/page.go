package ufs

import (
	"sort"
	"strings"
)

// pageNames cuts one page out of a directory's names for the adapters whose
// store returns a whole directory at once (file://, hdfs://). names must be
// sorted in byte order; the token is the last name of the previous page, so
// a listing resumes correctly even if names were added or removed between
// pages. Temporary files are skipped.
func pageNames(names []string, token string, limit int) (page []string, next string) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	i := 0
	if token != "" {
		i = sort.Search(len(names), func(j int) bool { return names[j] > token })
	}
	for ; i < len(names) && len(page) < limit; i++ {
		if strings.HasPrefix(names[i], TempPrefix) {
			continue
		}
		page = append(page, names[i])
	}
	// Only promise another page when a visible name remains.
	for ; i < len(names); i++ {
		if !strings.HasPrefix(names[i], TempPrefix) {
			return page, page[len(page)-1]
		}
	}
	return page, ""
}

// joinPath joins a directory path and a child name in the form FileInfo.Path
// uses.
func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// parentPath is the directory part of a cleaned path ("" for the root).
func parentPath(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}
