// Package nodepb is the generated gRPC API of a cache node (node.proto).
// Regenerate with `go generate ./cachenode/nodepb` (needs protoc,
// protoc-gen-go and protoc-gen-go-grpc on PATH).
package nodepb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative node.proto
