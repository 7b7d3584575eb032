//go:build darwin || freebsd || netbsd

package ufs

import "golang.org/x/sys/unix"

// errNoAttr is what getxattr (extattr_get_fd on the BSDs) returns for a
// missing attribute.
const errNoAttr = unix.ENOATTR
