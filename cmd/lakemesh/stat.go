package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/lakemesh/lakemesh/router"
)

func statCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:     "stat [flags] PATH",
		Short:   "Show a file's size, modification time and version",
		Long:    "Show what the namespace knows of a path: type, size, modification time,\nversion (the lake's ETag or an mtime+size digest) and the metadata stored\nwith a file (Content-Type, x-amz-meta-*, ...: see lakemesh s3 --help).\nServed from the region's metadata cache, which is at most the mount's\nmetadata TTL old.",
		Example: "  lakemesh stat /lake/s3-use1/train/part-0000",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cf.run(cmd, func(ctx context.Context, c *router.Client) error {
				e, attrs, err := c.StatAttrs(ctx, args[0])
				if err != nil {
					return err
				}
				kind := "file"
				if e.IsDir {
					kind = "directory"
				}
				fmt.Printf("path:     %s\ntype:     %s\n", e.Path, kind)
				if !e.IsDir {
					fmt.Printf("size:     %d (%s)\nversion:  %s\n", e.Size, humanBytes(e.Size), e.Version)
				}
				if !e.ModTime.IsZero() {
					fmt.Printf("modified: %s\n", e.ModTime.Local().Format(time.RFC3339))
				}
				for _, k := range slices.Sorted(maps.Keys(attrs)) {
					fmt.Printf("%s: %s\n", k, attrs[k])
				}
				return nil
			})
		},
	}
	cf.register(cmd)
	return cmd
}

// humanBytes renders a byte count in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
