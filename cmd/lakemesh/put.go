package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lakemesh/lakemesh/router"
	"github.com/lakemesh/lakemesh/ufs"
)

func putCmd() *cobra.Command {
	var cf clientFlags
	var contentType string
	var meta []string
	cmd := &cobra.Command{
		Use:   "put [flags] LOCAL-FILE|- PATH",
		Short: "Write a local file (or standard input) to a path of the namespace",
		Long: `Write a whole file to the namespace. The write goes through the region's
node that owns the path and returns once the path's write mode is satisfied:
the lake has the file (write_mode: through, the default), or the region's
journal has it on disk (write_mode: back). Readers see the old content or the
new, never a mix. Use - to read standard input. --content-type and --meta
store metadata with the file, as an S3 PUT does (lakemesh stat shows it).`,
		Example: "  lakemesh put model.bin /lake/s3-use1/models/v3/model.bin\n  echo hello | lakemesh put - /lake/s3-use1/notes/hello.txt\n  lakemesh put --content-type application/json --meta run=42 m.json /lake/s3-use1/m.json",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			attrs, err := putAttrs(contentType, meta)
			if err != nil {
				return err
			}
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
				e, err := c.PutAttrs(ctx, args[1], in, attrs)
				if err != nil {
					return err
				}
				fmt.Printf("%s: %s written (version %s)\n", e.Path, humanBytes(e.Size), e.Version)
				return nil
			})
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&contentType, "content-type", "", "Content-Type to store with the file")
	cmd.Flags().StringArrayVar(&meta, "meta", nil, "user metadata NAME=VALUE to store with the file (repeatable), as S3's x-amz-meta-NAME")
	return cmd
}

// putAttrs turns put's metadata flags into attrs, checked.
func putAttrs(contentType string, meta []string) (ufs.Attrs, error) {
	attrs := ufs.Attrs{}
	if contentType != "" {
		attrs["content-type"] = contentType
	}
	for _, m := range meta {
		name, value, ok := strings.Cut(m, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--meta %q: write NAME=VALUE, e.g. --meta run=42", m)
		}
		attrs[ufs.UserAttrPrefix+strings.ToLower(name)] = value
	}
	if err := attrs.Validate(); err != nil {
		return nil, fmt.Errorf("--meta or --content-type: %w", err)
	}
	return attrs, nil
}
