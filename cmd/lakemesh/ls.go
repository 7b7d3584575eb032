package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lakemesh/lakemesh/router"
)

func lsCmd() *cobra.Command {
	var cf clientFlags
	var long bool
	var pageSize int
	cmd := &cobra.Command{
		Use:   "ls [flags] PATH",
		Short: "List a directory of the namespace",
		Long: `List the entries of a directory of the namespace, page by page (a directory
of millions of entries streams; it is never held in memory whole).
Directories end in "/". With -l: size, modification time, version.`,
		Example: "  lakemesh ls /lake\n  lakemesh ls -l /lake/s3-use1/train",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cf.run(cmd, func(ctx context.Context, c *router.Client) error {
				st, err := c.Stat(ctx, args[0])
				if err != nil {
					return err
				}
				w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
				defer w.Flush()
				print := func(e router.Entry) error {
					name := e.Name()
					if e.IsDir {
						name += "/"
					}
					if !long {
						_, err := fmt.Fprintln(os.Stdout, name)
						return err
					}
					mtime := "-"
					if !e.ModTime.IsZero() {
						mtime = e.ModTime.Local().Format(time.DateTime)
					}
					_, err := fmt.Fprintf(w, "%d\t  %s\t  %s\t  %s\t\n", e.Size, mtime, name, e.Version)
					return err
				}
				if !st.IsDir {
					return print(st)
				}
				return c.Walk(ctx, st.Path, pageSize, print)
			})
		},
	}
	cf.register(cmd)
	cmd.Flags().BoolVarP(&long, "long", "l", false, "long listing: size, modification time, name, version")
	cmd.Flags().IntVar(&pageSize, "page", 1000, "entries asked for per listing call")
	return cmd
}
