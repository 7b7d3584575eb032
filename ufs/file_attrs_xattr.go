//go:build linux || darwin || freebsd || netbsd

package ufs

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// setFileAttrs stores data as the extended attribute fileAttrsName of
// file.
func setFileAttrs(file *os.File, data []byte) error {
	err := withFd(file, func(fd int) error { return unix.Fsetxattr(fd, fileAttrsName, data, 0) })
	if err == nil {
		return nil
	}
	return fmt.Errorf("set extended attribute %s: %w", fileAttrsName, classifyXattrErr(err, len(data)))
}

// classifyXattrErr tells the file systems that keep no user extended
// attributes, or none this large (ext4 says ENOSPC, others E2BIG), from
// other failures.
func classifyXattrErr(err error, size int) error {
	switch {
	case errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("the file system keeps no user extended attributes (%w): %w", err, ErrAttrsNotKept)
	case errors.Is(err, unix.E2BIG), errors.Is(err, unix.ENOSPC), errors.Is(err, unix.ERANGE):
		return fmt.Errorf("%d bytes of attrs are more than the file system keeps in one (%w): %w", size, err, ErrAttrsNotKept)
	}
	return err
}

// getFileAttrs returns the extended attribute fileAttrsName of file, or
// nil if it has none or its file system keeps none.
func getFileAttrs(file *os.File) ([]byte, error) {
	var data []byte
	err := withFd(file, func(fd int) error {
		for range 3 {
			n, err := unix.Fgetxattr(fd, fileAttrsName, nil)
			if err != nil {
				return err
			}
			buf := make([]byte, n)
			n, err = unix.Fgetxattr(fd, fileAttrsName, buf)
			if errors.Is(err, unix.ERANGE) {
				continue // it grew between the two calls
			}
			data = buf[:n]
			return err
		}
		return unix.ERANGE
	})
	switch {
	case err == nil:
		return data, nil
	case errors.Is(err, errNoAttr), errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EOPNOTSUPP):
		return nil, nil
	}
	return nil, fmt.Errorf("read extended attribute %s: %w", fileAttrsName, err)
}

// withFd runs fn with file's descriptor, without the side effects of
// os.File.Fd.
func withFd(file *os.File, fn func(fd int) error) error {
	rc, err := file.SyscallConn()
	if err != nil {
		return err
	}
	var fnErr error
	if err := rc.Control(func(fd uintptr) { fnErr = fn(int(fd)) }); err != nil {
		return err
	}
	return fnErr
}
