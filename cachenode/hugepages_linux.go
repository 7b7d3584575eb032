//go:build linux

package cachenode

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePage is the size of a transparent huge page with 4 KiB base pages
// (x86-64, arm64).
const hugePage = 2 << 20

// adviseHugePages asks the kernel to back b with transparent huge pages
// when it is first touched (MADV_HUGEPAGE: honoured where the system's THP
// mode is "madvise", the usual default, and "always"; without effect under
// "never"). Fill buffers are fresh memory that the memory tier keeps, and
// faulting them in 4 KiB at a time was the largest cost of a cold read on
// the project's virtual machine: 512 MiB cost 2.2-2.5 CPU seconds of page
// faults in 4 KiB pages, 0.7-1.5 s in huge pages. Go's runtime does not
// advise its heap itself.
//
// The advice covers the 2 MiB-aligned ranges b overlaps, not only those
// inside it: fill buffers are allocated one after another, so a range
// shared by two of them is advised before either touches it. The advice
// changes how the kernel backs those ranges of the heap, never their
// contents; they stay advised after their buffers are freed, so the kernel
// may keep a freed range resident as a huge page (bounded by the heap).
func adviseHugePages(b []byte) {
	if len(b) < hugePage {
		return
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	lo := start &^ (hugePage - 1)
	hi := (start + uintptr(len(b)) + hugePage - 1) &^ (hugePage - 1)
	// The range extends past b, so it is passed as addresses. Advice only:
	// a kernel without THP refuses it, and the buffer works the same.
	_, _, _ = unix.Syscall(unix.SYS_MADVISE, lo, hi-lo, unix.MADV_HUGEPAGE)
}
