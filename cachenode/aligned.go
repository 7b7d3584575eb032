package cachenode

import "unsafe"

// DirectAlign is the alignment of direct I/O's buffer address, file offset
// and length: the largest logical block size of common devices.
const DirectAlign = 4096

const directAlign = DirectAlign

// AlignedBuffer returns n bytes at an address aligned for direct I/O.
func AlignedBuffer(n int) []byte {
	b := make([]byte, n+DirectAlign)
	skip := 0
	if rem := uintptr(unsafe.Pointer(unsafe.SliceData(b))) % DirectAlign; rem != 0 {
		skip = DirectAlign - int(rem)
	}
	return b[skip : skip+n : skip+n]
}
