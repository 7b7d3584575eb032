package ufs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
)

// fileAttrsName is the extended attribute that holds a file's Attrs on a
// file:// lake, as JSON of the map. Create writes new files without it, and
// rename(2) keeps it, so Create clears attrs and Rename keeps them.
const fileAttrsName = "user.lakemesh.attrs"

var _ AttrFS = (*fileFS)(nil)

// CreateAttrs writes the file as Create does, with attrs set on the
// temporary file before it is renamed into place: the rename publishes
// bytes and attrs at once.
func (f *fileFS) CreateAttrs(ctx context.Context, p string, r io.Reader, attrs Attrs) (FileInfo, error) {
	p, err := f.arg(ctx, "create", p)
	if err != nil {
		return FileInfo{}, err
	}
	if err := attrs.Validate(); err != nil {
		return FileInfo{}, fmt.Errorf("create %s: %w", f.where(p), err)
	}
	var data []byte
	if len(attrs) > 0 {
		if data, err = json.Marshal(attrs); err != nil {
			return FileInfo{}, fmt.Errorf("create %s: encode attrs: %w", f.where(p), err)
		}
	}
	return f.create(ctx, p, r, data)
}

// StatAttrs stats the file and reads its attrs through one descriptor, so
// both are of the same file even while a Create renames another over it.
func (f *fileFS) StatAttrs(ctx context.Context, p string) (FileInfo, Attrs, error) {
	p, err := f.arg(ctx, "stat", p)
	if err != nil {
		return FileInfo{}, nil, err
	}
	st, err := f.root.Stat(osName(p))
	if err != nil {
		return FileInfo{}, nil, f.fail("stat", p, err, ErrNotFound)
	}
	if !st.Mode().IsRegular() {
		// Directories have no attrs, Create only writes regular files, and
		// opening a FIFO to look would block.
		return fileInfoOf(p, st), nil, nil
	}
	file, err := f.root.Open(osName(p))
	if err != nil {
		return FileInfo{}, nil, f.fail("stat", p, err, ErrNotFound)
	}
	defer file.Close()
	if st, err = file.Stat(); err != nil {
		return FileInfo{}, nil, f.fail("stat", p, err, ErrNotFound)
	}
	if !st.Mode().IsRegular() {
		return fileInfoOf(p, st), nil, nil
	}
	data, err := getFileAttrs(file)
	if err != nil {
		return FileInfo{}, nil, fmt.Errorf("stat %s: %w", f.where(p), err)
	}
	if len(data) == 0 {
		return fileInfoOf(p, st), nil, nil
	}
	var attrs Attrs
	if err := json.Unmarshal(data, &attrs); err != nil {
		return FileInfo{}, nil, fmt.Errorf("stat %s: extended attribute %s holds no attrs: %w", f.where(p), fileAttrsName, err)
	}
	return fileInfoOf(p, st), attrs, nil
}
