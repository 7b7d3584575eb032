package main

import (
	"context"
	"github.com/spf13/cobra"

	"github.com/lakemesh/lakemesh/router"
)

func rmCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:     "rm [flags] PATH...",
		Short:   "Remove files (or empty directories) from the namespace",
		Long:    "Remove files, or empty directories, from their lakes. Each path is removed in\nturn; the first failure stops the command and names the path.",
		Example: "  lakemesh rm /lake/s3-use1/notes/hello.txt",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cf.run(cmd, func(ctx context.Context, c *router.Client) error {
				for _, p := range args {
					if err := c.Remove(ctx, p); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
	cf.register(cmd)
	return cmd
}
