package ufs

import "golang.org/x/sys/unix"

// errNoAttr is what getxattr returns for a missing attribute.
const errNoAttr = unix.ENODATA
