package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/lakemesh/lakemesh/router"
)

func putCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "put [flags] LOCAL-FILE|- PATH",
		Short: "Write a local file (or standard input) to a path of the namespace",
		Long: `Write a whole file to the namespace. The write goes through the region's
node that owns the path and returns once the lake has the file (write-through).
Readers see the old content or the new, never a mix. Use - to read standard
input.`,
		Example: "  lakemesh put model.bin /lake/s3-use1/models/v3/model.bin\n  echo hello | lakemesh put - /lake/s3-use1/notes/hello.txt",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var in io.Reader = os.Stdin
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			return cf.run(cmd, func(ctx context.Context, c *router.Client) error {
				e, err := c.Put(ctx, args[1], in)
				if err != nil {
					return err
				}
				fmt.Printf("%s: %s written (version %s)\n", e.Path, humanBytes(e.Size), e.Version)
				return nil
			})
		},
	}
	cf.register(cmd)
	return cmd
}
