// Package test holds lakemesh's end-to-end tests: they build the lakemesh
// binary, start real processes (a Consul agent, MinIO, several cache node
// processes of a region) and check the promises of DESIGN.md from outside,
// counting bytes at a TCP proxy in front of MinIO rather than trusting
// lakemesh's own accounting.
//
// Run them with `make test` (which first builds consul and minio). Without
// those binaries the tests skip and say what is missing; with
// LAKEMESH_REQUIRE_SERVICES=1 (CI) they fail instead.
package test
