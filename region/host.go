package region

import (
	"os"
	"strings"
	"sync"
)

// LocalHost returns the identity of the machine this process runs on, the
// value a node advertises as Member.Host: two processes on one machine get
// the same string, processes on two machines different ones. It is the
// systemd machine id (/etc/machine-id, or /var/lib/dbus/machine-id) when
// there is one, else the hostname and the kernel's boot id, which also
// tells apart two containers that share a hostname but not a kernel.
// Two containers of one machine with separate machine ids are different
// hosts to it, which is what a Unix socket path needs: they do not share a
// filesystem either, unless mounted so. It is computed once per process.
func LocalHost() string {
	localHostOnce.Do(func() { localHost = readLocalHost() })
	return localHost
}

var (
	localHostOnce sync.Once
	localHost     string
)

func readLocalHost() string {
	for _, p := range []string{"/etc/machine-id", "/var/lib/dbus/machine-id"} {
		if id := readTrimmed(p); id != "" {
			return "machine-id:" + id
		}
	}
	name, _ := os.Hostname()
	return "host:" + name + "/boot:" + readTrimmed("/proc/sys/kernel/random/boot_id")
}

func readTrimmed(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
