package fusefs

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// spoolPrefix starts the name of a mount's private spool directory; the
// mounting process's id follows, so a later mount can tell the spools of
// a mount that died from those of one still running.
const spoolPrefix = "lakemesh-mount-"

// makeSpoolDir makes a private (0700) spool directory for this mount under
// parent, creating parent (0700) when missing, and removes the spool
// directories of mounts whose process is gone.
func makeSpoolDir(parent string, log *slog.Logger) (string, error) {
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return "", fmt.Errorf("spool directory %s: %w", parent, err)
	}
	removeDeadSpools(parent, log)
	dir, err := os.MkdirTemp(parent, fmt.Sprintf("%s%d-", spoolPrefix, os.Getpid()))
	if err != nil {
		return "", fmt.Errorf("spool directory %s: %w", parent, err)
	}
	return dir, nil
}

// removeDeadSpools removes what crashed mounts left under parent.
func removeDeadSpools(parent string, log *slog.Logger) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), spoolPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			continue // alive, or not ours to judge
		}
		dir := filepath.Join(parent, e.Name())
		if err := os.RemoveAll(dir); err == nil {
			log.Info("removed the spool of a mount that is gone", "dir", dir)
		}
	}
}

// newSpool creates an empty spool file for one open-for-write handle.
func (f *FS) newSpool() (*os.File, error) {
	sp, err := os.CreateTemp(f.spoolDir, "write-*")
	if err != nil {
		return nil, fmt.Errorf("create spool file in %s: %w", f.spoolDir, err)
	}
	return sp, nil
}

// dropSpool closes and removes a spool file.
func dropSpool(sp *os.File) {
	if sp == nil {
		return
	}
	sp.Close()
	os.Remove(sp.Name())
}
