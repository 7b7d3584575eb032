// consul-agent builds just the Consul agent from the Go module proxy, for
// lakemesh's integration tests: `consul agent -dev ...`.
package main

import (
	"fmt"
	"io"
	"log"
	"os"

	"github.com/hashicorp/consul/command/agent"
	"github.com/hashicorp/consul/command/cli"
	mcli "github.com/mitchellh/cli"
)

func main() {
	log.SetOutput(io.Discard)
	args := os.Args[1:]
	if len(args) > 0 && (args[0] == "version" || args[0] == "--version") {
		fmt.Println("Consul v1.20.0 (agent only, built for lakemesh tests)")
		return
	}
	if len(args) == 0 || args[0] != "agent" {
		fmt.Fprintln(os.Stderr, "usage: consul agent [options]  (this build has only the agent command)")
		os.Exit(1)
	}
	ui := &cli.BasicUI{BasicUi: mcli.BasicUi{Writer: os.Stdout, ErrorWriter: os.Stderr}}
	os.Exit(agent.New(ui).Run(args[1:]))
}
