// Command lakemesh is the single binary of the mesh: the cache node
// daemon, the demo mesh, and the client operations.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	// Lake adapters register themselves by URI scheme.
	_ "github.com/lakemesh/lakemesh/ufs"
)

func main() {
	if addr := os.Getenv("LAKEMESH_PPROF"); addr != "" {
		// Profiling for operators and benchmarks: net/http/pprof on addr.
		go func() { fmt.Fprintln(os.Stderr, http.ListenAndServe(addr, nil)) }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := rootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		// One line per error: a topology with three mistakes prints
		// three lines, each naming its file, line and field.
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(os.Stderr, "lakemesh: "+line)
		}
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

// exitError carries a specific exit status.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "lakemesh",
		Short: "A data federation mesh: every lake, served from the closest copy",
		Long: `lakemesh puts a cache cluster in every region, federates the clusters, and
gives every GPU one namespace over all the lakes (/lake/<mount>/...).

Start here:
  lakemesh up                       run a whole demo mesh in this process
  lakemesh ls /lake                 list the namespace (from another terminal)
  lakemesh cat --trace /lake/...    read a file and explain where it came from

Client commands find their region from a node address (--node, or
$LAKEMESH_NODE; default 127.0.0.1:7070) or from Consul (--consul and
--region).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(upCmd(), nodeCmd(), lsCmd(), statCmd(), catCmd(), putCmd(), rmCmd(), syncCmd(), statusCmd(), mountCmd(), s3Cmd())
	return root
}
