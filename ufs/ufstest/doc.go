// Package ufstest is the conformance suite for ufs.FS: one set of tests
// that every lake adapter (file://, s3://, hdfs://) must pass, so the
// contract written on ufs.FS is checked against each implementation rather
// than trusted.
//
// An adapter's test calls Run with a constructor that returns a fresh,
// empty root for each subtest (a new temporary directory, a new bucket or
// key prefix, a new HDFS directory). The suite only goes through the FS
// interface, so whatever it observes a caller would observe too.
//
// Tests of an optional interface (ufs.AttrFS) run on the adapters that
// implement it and are skipped, naming the lake, on the others.
//
// Where the contract lets object stores differ (listing a file, reading a
// directory), the suite accepts exactly the alternatives the contract
// names, no more.
package ufstest
