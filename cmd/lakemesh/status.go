package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/federation"
	"github.com/lakemesh/lakemesh/router"
)

func statusCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "status [flags]",
		Short: "Show the mesh: regions, nodes, cache use, and each line's use against its budget",
		Long: `Ask every node this region knows of (its own members and the other regions'
members it follows) to describe itself, and show:

  regions  each region's nodes that answered, and their cache use;
  lines    each direction of each line: the rate now (the last 10 s, summed
           over the receiving region's nodes) against the line's budget,
           the bytes that crossed and what they cost since the nodes
           started, and the time transfers waited for budget, by class.

Nodes that do not answer within a few seconds are listed as such.`,
		Example: "  lakemesh status\n  lakemesh status --node 10.0.0.5:7070",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := cf.dial(ctx, noop.NewTracerProvider())
			if err != nil {
				return err
			}
			defer c.Close()
			seed := c.Members()
			if len(seed) == 0 {
				return fmt.Errorf("region %s has no nodes", c.Region())
			}
			info, err := router.NodeInfo(ctx, seed[0].Addr)
			if err != nil {
				return err
			}
			all := append(append([]*nodepb.Member{}, info.GetMembers()...), info.GetOtherMembers()...)
			infos := gatherInfo(ctx, all)
			printStatus(os.Stdout, c.Topology(), all, infos)
			return nil
		},
	}
	cf.register(cmd)
	return cmd
}

// gatherInfo asks every member for its Info at once; a node that does not
// answer has a nil entry.
func gatherInfo(ctx context.Context, members []*nodepb.Member) []*nodepb.InfoReply {
	out := make([]*nodepb.InfoReply, len(members))
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if info, err := router.NodeInfo(ctx, m.GetAddr()); err == nil {
				out[i] = info
			}
		}()
	}
	wg.Wait()
	return out
}

func printStatus(w io.Writer, topo *federation.Topology, members []*nodepb.Member, infos []*nodepb.InfoReply) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "REGION\tNODE\tADDRESS\tCACHE (memory)\tCACHE (disk)\tPAGES\n")
	byRegion := map[string][]int{}
	for i, m := range members {
		byRegion[m.GetRegion()] = append(byRegion[m.GetRegion()], i)
	}
	for _, r := range topo.Regions {
		idx := byRegion[r.Name]
		if len(idx) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\tno nodes known\t\t\n", r.Name)
			continue
		}
		for _, i := range idx {
			m, info := members[i], infos[i]
			if info == nil {
				fmt.Fprintf(tw, "%s\t%s\t%s\tnot answering\t\t\n", r.Name, m.GetId(), m.GetAddr())
				continue
			}
			cs := info.GetCache()
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s / %s\t%s / %s\t%d\n", r.Name, m.GetId(), m.GetAddr(),
				humanBytes(cs.GetMemoryBytes()), humanBytes(cs.GetMemoryLimit()),
				humanBytes(cs.GetDiskBytes()), humanBytes(cs.GetDiskLimit()), cs.GetPages())
		}
	}
	tw.Flush()
	fmt.Fprintln(w)

	type agg struct {
		bytes int64
		wait  time.Duration
		cost  float64
		rate  float64
	}
	perDir := map[string]*agg{}
	perClass := map[string]map[string]*agg{}
	for _, info := range infos {
		for _, u := range info.GetLines() {
			k := u.GetFrom() + "->" + u.GetTo()
			a := perDir[k]
			if a == nil {
				a = &agg{}
				perDir[k] = a
				perClass[k] = map[string]*agg{}
			}
			c := perClass[k][u.GetClass()]
			if c == nil {
				c = &agg{}
				perClass[k][u.GetClass()] = c
			}
			for _, x := range []*agg{a, c} {
				x.bytes += u.GetBytes()
				x.wait += time.Duration(u.GetWaitNanos())
				x.cost += u.GetCost()
				x.rate += u.GetRate()
			}
		}
	}
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "LINE\tNOW\tBUDGET\tUSE\tCROSSED\tCOST\tBUDGET WAIT\tBY CLASS\n")
	for _, l := range topo.Lines {
		for _, d := range [][2]string{{l.Between[0], l.Between[1]}, {l.Between[1], l.Between[0]}} {
			k := d[0] + "->" + d[1]
			a := perDir[k]
			if a == nil {
				a = &agg{}
			}
			var classes []string
			for c, x := range perClass[k] {
				classes = append(classes, fmt.Sprintf("%s %s", c, humanBytes(x.bytes)))
			}
			sort.Strings(classes)
			fmt.Fprintf(tw, "%s\t%s/s\t%s\t%.0f%%\t%s\t%.4f\t%s\t%s\n", k,
				humanBytes(int64(a.rate)), l.Budget, 100*a.rate/float64(l.Budget),
				humanBytes(a.bytes), a.cost, a.wait.Round(time.Millisecond), strings.Join(classes, ", "))
		}
	}
	tw.Flush()
}
