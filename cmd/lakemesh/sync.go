package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/lakemesh/lakemesh/router"
)

func syncCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "sync [flags] PATH",
		Short: "Refresh metadata under a path now, instead of waiting for its TTL",
		Long: `Drop the cached metadata (stat and list answers) at and below PATH on every
node of the region, and of every other region when the nodes are joined by
NATS (as in 'lakemesh up'), so the next access asks the lake. Use it after changing a
lake behind lakemesh's back when the mount's metadata TTL is too long to wait.
Cached pages are keyed by file version, so a changed file's old pages are
never served once its new version is seen.`,
		Example: "  lakemesh sync /lake/s3-use1/train",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cf.run(cmd, func(ctx context.Context, c *router.Client) error {
				n, mesh, err := c.Sync(ctx, args[0])
				if err != nil {
					return err
				}
				scope := "the other regions were not told: the nodes have no NATS connection"
				if mesh {
					scope = "every other region told over NATS"
				}
				fmt.Printf("%s: metadata refreshed on the %d nodes of region %s (%d cached entries dropped); %s\n", args[0], len(c.Members()), c.Region(), n, scope)
				return nil
			})
		},
	}
	cf.register(cmd)
	return cmd
}
