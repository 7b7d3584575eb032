package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lakemesh/lakemesh/federation"
	"github.com/lakemesh/lakemesh/gateway/fusefs"
)

func mountCmd() *cobra.Command {
	var cf clientFlags
	var spoolDir string
	var allowOther, debug, readOnly bool
	var timeout time.Duration
	var memoryLimit string
	cmd := &cobra.Command{
		Use:   "mount [flags] MOUNTPOINT",
		Short: "Mount the region's namespace with FUSE",
		Long: `Mount the whole namespace of the region at MOUNTPOINT (its "/" there, so
MOUNTPOINT/lake/<mount>/...), for reading and writing, until interrupted.

Reads: a file is read at the version it had when opened, from the closest
copy, with readahead on sequential access (1 MiB kernel requests) and exact
ranges on random access. If the file changes in the lake while open, a read
the old version cannot serve fails with ESTALE: open it again. Listings,
stat and lookups come from the nodes' metadata cache; the kernel caches them
for the mount's metadata_ttl. A change made through lakemesh anywhere in the
region (another mount, the S3 gateway, the CLI) shows at once; one made in
the lake directly shows within twice the TTL. Large directories are listed
page by page.

Writes: a file open for writing is spooled to local disk (--spool-dir),
never held in memory. close and fsync write the whole file to the lake
(write-through or write-back, as the path's policy says) and return its
error; a new file is visible to this mount at once and to others after
close. A file written in order (a checkpoint) is uploaded while it is
written, so close waits for its tail only. Opening an existing file for
writing without O_TRUNC copies it into the spool on the first write. Mode,
owner and times are not stored.

Errors: not found ENOENT, not a directory ENOTDIR, is a directory EISDIR,
not empty ENOTEMPTY, bad path EINVAL, changed while open ESTALE, read-only
mount EROFS, residency policy EACCES, a write outside the mounts EROFS, a
rename between mounts EXDEV, names over 255 bytes ENAMETOOLONG, no node can
serve EIO (logged), --timeout passed ETIMEDOUT.

Memory is bounded whatever the number of open files: requests in flight
(64 MiB of them), the region client's page buffers (a fixed number), at most
8 uploads of 1 MiB buffers (one streamed as it is written also holds 8 MiB
of its latest appends), and --memory-limit for the Go heap; 1,000 files
open and read at once stay under 512 MiB of RSS.

SIGINT or SIGTERM unmounts and exits 0; while files are open under the
mount it says so in one line (close them and signal again, or unmount
lazily with fusermount3 -uz MOUNTPOINT) and keeps serving. A mount point
left stale by a crashed mount ("transport endpoint is not connected"), or
already holding a live FUSE mount, is reported with the command that
clears it: fusermount3 -u MOUNTPOINT.`,
		Example: "  lakemesh mount /mnt/lake\n" +
			"  lakemesh mount --consul 127.0.0.1:8500 --region gpu-wlcb --allow-other /mnt/lake\n" +
			"  lakemesh mount --read-only --node 10.0.0.7:7070 /mnt/lake",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			if err := fusefs.CheckMountpoint(dir); err != nil {
				return err
			}
			if err := setMemoryLimit(cmd, memoryLimit); err != nil {
				return err
			}
			log := newLogger(cf.logLevel)
			// The mount outlives the first signal when it is busy: its
			// client must not stop with the command's context.
			ctx := context.WithoutCancel(cmd.Context())
			c, err := cf.dial(ctx, nil)
			if err != nil {
				return err
			}
			defer c.Close()
			fsys, err := fusefs.New(fusefs.Config{
				Namespace: c,
				Topology:  c.Topology(),
				SpoolDir:  spoolDir,
				ReadOnly:  readOnly,
				OpTimeout: timeout,
				Logger:    log,
			})
			if err != nil {
				return err
			}
			defer fsys.Close()
			m, err := fsys.Mount(dir, fusefs.MountOptions{AllowOther: allowOther, Debug: debug})
			if err != nil {
				return err
			}
			mode := "read-write"
			if readOnly {
				mode = "read-only"
			}
			fmt.Printf("lakemesh: region %s mounted at %s (%s, %d nodes); stop with Ctrl-C or: fusermount3 -u %s\n",
				c.Region(), dir, mode, len(c.Members()), dir)
			return serveMount(m)
		},
	}
	cf.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&spoolDir, "spool-dir", filepath.Join(os.TempDir(), "lakemesh-spool"), "local directory for the spools of files open for writing (a private 0700 directory is made in it)")
	fl.BoolVar(&allowOther, "allow-other", false, "let users other than the one mounting use the mount (the kernel checks the files' modes)")
	fl.BoolVar(&debug, "debug", false, "log every FUSE operation on standard error")
	fl.BoolVar(&readOnly, "read-only", false, "mount read-only: every change fails with EROFS")
	fl.DurationVar(&timeout, "timeout", fusefs.DefaultOpTimeout, "time limit of one metadata call or read (a close's upload gets more time with its size); past it the call fails with ETIMEDOUT")
	fl.StringVar(&memoryLimit, "memory-limit", "256MiB", "soft limit of the mount process's heap (Go's GOMEMLIMIT; that variable wins when set and this flag is not given)")
	return cmd
}

// setMemoryLimit makes the Go runtime collect garbage before the heap
// passes limit. The mount's own buffers are bounded far below it (requests
// in flight, the router's page buffers, upload buffers); without a limit,
// garbage alone could double the process's size.
func setMemoryLimit(cmd *cobra.Command, limit string) error {
	if os.Getenv("GOMEMLIMIT") != "" && !cmd.Flags().Changed("memory-limit") {
		return nil
	}
	n, err := federation.ParseSize(limit)
	if err != nil || n <= 0 {
		return fmt.Errorf("--memory-limit %q: give a size like 256MiB", limit)
	}
	debug.SetMemoryLimit(n)
	return nil
}

// serveMount serves until the mount is gone: unmounted on SIGINT or
// SIGTERM (retried at the next signal while busy), or from outside.
func serveMount(m *fusefs.Mount) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	gone := make(chan struct{})
	go func() { m.Wait(); close(gone) }()
	for {
		select {
		case <-gone:
			fmt.Printf("lakemesh: %s unmounted\n", m.Dir())
			return nil
		case <-sigs:
			err := m.Unmount()
			if errors.Is(err, fusefs.ErrBusy) {
				fmt.Fprintln(os.Stderr, "lakemesh: "+err.Error())
				continue
			}
			if err != nil {
				return err
			}
		}
	}
}
