package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// mountCmd is replaced by the FUSE front end.
func mountCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "mount MOUNTPOINT",
		Short:  "mount the region's namespace with FUSE (not built yet)",
		Hidden: true,
		RunE:   func(*cobra.Command, []string) error { return errors.New("mount: not built yet") },
	}
}
