package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func catCmd() *cobra.Command {
	var cf clientFlags
	var explain bool
	var offset, length int64
	cmd := &cobra.Command{
		Use:   "cat [flags] PATH",
		Short: "Write a file of the namespace to standard output",
		Long: `Read a file through the region's cache nodes and write it to standard output.
Every byte comes from the closest copy: this region's cache (memory or disk),
else the lake, read once by the page's owner node.

With --trace, the read is explained on standard error: which node served each
page, whether the bytes came from memory, disk, the lake or another region,
how many bytes and how long it took; for bytes from another region, which
region and node served them, the lines they crossed, the bytes that crossed,
the time spent waiting for line budget and what the crossing cost. Traces are also exported by OTLP when the
standard OTEL_EXPORTER_OTLP_* variables are set.`,
		Example: "  lakemesh cat /lake/s3-use1/README.txt\n  lakemesh cat --trace /lake/s3-use1/train/part-0000 > /dev/null\n  lakemesh cat --offset 4096 --length 4096 /lake/s3-use1/train/part-0000 | xxd | head",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			rec := tracetest.NewSpanRecorder()
			var extra []sdktrace.SpanProcessor
			if explain {
				extra = append(extra, rec)
			}
			tp, shutdown := tracing(ctx, "lakemesh-cat", newLogger(cf.logLevel), extra...)
			defer shutdown(ctx)
			c, err := cf.dial(ctx, tp)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, span := tp.Tracer("lakemesh/cmd").Start(ctx, "lakemesh.cat", trace.WithAttributes(attribute.String("lakemesh.path", args[0])))
			defer span.End()
			start := time.Now()
			f, err := c.Open(ctx, args[0])
			if err != nil {
				return err
			}
			if offset < 0 || length < -1 {
				return fmt.Errorf("--offset and --length must not be negative")
			}
			end := f.Size()
			if length >= 0 {
				end = min(end, offset+length)
			}
			out := bufio.NewWriterSize(os.Stdout, 1<<20)
			buf := make([]byte, 16<<20)
			var written int64
			for pos := offset; pos < end; {
				n, rerr := f.ReadAt(ctx, buf[:min(int64(len(buf)), end-pos)], pos)
				if n > 0 {
					if _, werr := out.Write(buf[:n]); werr != nil {
						return fmt.Errorf("write to standard output: %w", werr)
					}
					pos += int64(n)
					written += int64(n)
				}
				if rerr != nil && !errors.Is(rerr, io.EOF) {
					return rerr
				}
				if n == 0 {
					break
				}
			}
			if err := out.Flush(); err != nil {
				return fmt.Errorf("write to standard output: %w", err)
			}
			if explain {
				printTrace(os.Stderr, f.Entry().Path, f.Entry().Version, c.Region(), written, time.Since(start), rec.Ended())
			}
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().BoolVar(&explain, "trace", false, "explain the read on standard error: node, source, bytes and time of every page")
	cmd.Flags().Int64Var(&offset, "offset", 0, "first byte to read")
	cmd.Flags().Int64Var(&length, "length", -1, "bytes to read (-1: to the end)")
	return cmd
}

// printTrace renders the page.fetch spans of one cat as a tree a person
// reads at a glance: a line per page (source, bytes, time, node), and
// under a page that came from another region, where from, over which
// lines, the bytes that crossed, the wait for budget and the cost ("read
// ahead from" when the node's readahead crossed them before this read
// asked); then totals by source and by line.
func printTrace(w io.Writer, path, version, region string, bytes int64, took time.Duration, spans []sdktrace.ReadOnlySpan) {
	type row struct {
		page               int64
		node, source       string
		fromRegion, fromNd string
		lines              []string
		bytes, crossed     int64
		wait               time.Duration
		cost               float64
		ahead              bool
		dur                time.Duration
		err                string
	}
	var rows []row
	for _, s := range spans {
		if s.Name() != "page.fetch" {
			continue
		}
		r := row{dur: s.EndTime().Sub(s.StartTime())}
		for _, a := range s.Attributes() {
			switch a.Key {
			case "lakemesh.page":
				r.page = a.Value.AsInt64()
			case "lakemesh.node":
				r.node = a.Value.AsString()
			case "lakemesh.source":
				// Before any " (short-circuit)" already added.
				r.source = a.Value.AsString() + r.source
			case "lakemesh.short_circuit":
				if a.Value.AsBool() {
					r.source += " (short-circuit)"
				}
			case "lakemesh.bytes":
				r.bytes = a.Value.AsInt64()
			case "lakemesh.from_region":
				r.fromRegion = a.Value.AsString()
			case "lakemesh.from_node":
				r.fromNd = a.Value.AsString()
			case "lakemesh.lines":
				r.lines = a.Value.AsStringSlice()
			case "lakemesh.crossed_bytes":
				r.crossed = a.Value.AsInt64()
			case "lakemesh.budget_wait_us":
				r.wait = time.Duration(a.Value.AsInt64()) * time.Microsecond
			case "lakemesh.cost":
				r.cost = a.Value.AsFloat64()
			case "lakemesh.read_ahead":
				r.ahead = a.Value.AsBool()
			}
		}
		if s.Status().Description != "" {
			r.err = s.Status().Description
		}
		rows = append(rows, r)
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].page < rows[j].page })
	rate := float64(bytes) / took.Seconds() / (1 << 20)
	fmt.Fprintf(w, "read %s (version %s): %s in %s (%.0f MiB/s), region %s\n", path, version, humanBytes(bytes), took.Round(time.Microsecond), rate, region)
	const maxRows = 40
	type total struct {
		pages int
		bytes int64
	}
	type lineTotal struct {
		crossed int64
		wait    time.Duration
		cost    float64
	}
	totals := map[string]*total{}
	lineTotals := map[string]*lineTotal{}
	for i, r := range rows {
		src := r.source
		if src == "" {
			src = "error"
		}
		t := totals[src]
		if t == nil {
			t = &total{}
			totals[src] = t
		}
		t.pages++
		t.bytes += r.bytes
		if len(r.lines) > 0 {
			key := strings.Join(r.lines, ", ")
			lt := lineTotals[key]
			if lt == nil {
				lt = &lineTotal{}
				lineTotals[key] = lt
			}
			lt.crossed += r.crossed
			lt.wait += r.wait
			lt.cost += r.cost
		}
		if i >= maxRows {
			continue
		}
		branch := "├─"
		if i == len(rows)-1 || i == maxRows-1 {
			branch = "└─"
		}
		line := fmt.Sprintf("%s page %-5d %-7s %9s %10s  node %s", branch, r.page, src, humanBytes(r.bytes), r.dur.Round(time.Microsecond), r.node)
		if r.err != "" {
			line += "  error: " + r.err
		}
		fmt.Fprintln(w, line)
		if r.fromRegion != "" {
			stem := "│ "
			if branch == "└─" {
				stem = "  "
			}
			from := r.fromRegion
			if r.fromNd != "" {
				from += " (" + r.fromNd + ")"
			}
			how := "from"
			if r.ahead {
				how = "read ahead from" // crossed before this read asked
			}
			fmt.Fprintf(w, "%s   └─ %s %s over %s: %s crossed, budget wait %s, cost %.6f\n",
				stem, how, from, strings.Join(r.lines, " then "), humanBytes(r.crossed), r.wait.Round(time.Microsecond), r.cost)
		}
	}
	if len(rows) > maxRows {
		fmt.Fprintf(w, "   ... %d more page reads\n", len(rows)-maxRows)
	}
	var srcs []string
	for s := range totals {
		srcs = append(srcs, s)
	}
	sort.Strings(srcs)
	fmt.Fprint(w, "by source:")
	for _, s := range srcs {
		fmt.Fprintf(w, "  %s %d reads %s;", s, totals[s].pages, humanBytes(totals[s].bytes))
	}
	fmt.Fprintln(w)
	var routes []string
	for k := range lineTotals {
		routes = append(routes, k)
	}
	sort.Strings(routes)
	for _, k := range routes {
		lt := lineTotals[k]
		fmt.Fprintf(w, "lines %s: %s crossed, budget wait %s, cost %.6f\n", k, humanBytes(lt.crossed), lt.wait.Round(time.Microsecond), lt.cost)
	}
}
