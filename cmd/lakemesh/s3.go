package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// s3Cmd is replaced by the S3 gateway.
func s3Cmd() *cobra.Command {
	return &cobra.Command{
		Use:    "s3",
		Short:  "serve the namespace over S3 (not built yet)",
		Hidden: true,
		RunE:   func(*cobra.Command, []string) error { return errors.New("s3: not built yet") },
	}
}
