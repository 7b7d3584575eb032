package transfer

import (
	"fmt"
	"strings"
)

// Class is the priority class of bytes that cross a line. A line's budget
// serves waiting requests strictly in class order, highest first; a class
// gets whatever the classes above it leave.
type Class int

const (
	// Interactive is a read someone is waiting on (an on-demand fill).
	Interactive Class = iota
	// Rollout pushes a model to the regions that serve it.
	Rollout
	// Preload warms a region's cache ahead of a job.
	Preload
	// WriteBack uploads acknowledged writes to their lake.
	WriteBack

	classCount = int(WriteBack) + 1
)

var classNames = [classCount]string{"interactive", "rollout", "preload", "write-back"}

// String returns the class's name as ParseClass reads it.
func (c Class) String() string {
	if !c.valid() {
		return fmt.Sprintf("class(%d)", int(c))
	}
	return classNames[c]
}

func (c Class) valid() bool { return c >= 0 && int(c) < classCount }

// ParseClass reads a class name ("interactive", "rollout", "preload",
// "write-back"), in any case.
func ParseClass(s string) (Class, error) {
	for c, name := range classNames {
		if strings.EqualFold(s, name) {
			return Class(c), nil
		}
	}
	return 0, fmt.Errorf("unknown transfer class %q; classes are %s", s, strings.Join(classNames[:], ", "))
}
