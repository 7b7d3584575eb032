package federation

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ParseError is one problem found in a topology file. Parse and Load
// return every problem of a file at once, joined with errors.Join in file
// order; errors.As finds the first, and a caller that wants all of them
// unwraps the join (interface{ Unwrap() []error }).
//
// Its message is one line:
//
//	<Source>:<Line>: <Field>: <Msg>
//
// where Msg says what is wrong and, after "; ", what would be right.
type ParseError struct {
	Source string // file name as given to Parse or Load
	Line   int    // 1-based; 0 when the YAML parser could not tell
	Field  string // e.g. "lines[1].between[0]"; empty for file-level problems
	Msg    string
}

func (e *ParseError) Error() string {
	var b strings.Builder
	b.WriteString(e.Source)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// problems collects the ParseErrors of one file.
type problems struct {
	source string
	list   []*ParseError
}

func (p *problems) add(line int, field, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	// One problem, one line: user text is quoted with %q where it is
	// printed, and this catches anything that slipped through.
	msg = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0x85 || r == 0x2028 || r == 0x2029 {
			return ' '
		}
		return r
	}, msg)
	p.list = append(p.list, &ParseError{Source: p.source, Line: line, Field: field, Msg: msg})
}

// err returns nil or all problems joined, in file order; problems on the
// same line keep the order they were found in.
func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	slices.SortStableFunc(p.list, func(a, b *ParseError) int { return a.Line - b.Line })
	errs := make([]error, len(p.list))
	for i, e := range p.list {
		errs[i] = e
	}
	return errors.Join(errs...)
}
