package federation

import (
	"fmt"
	"math/big"
	"strings"
)

// unit is one suffix of a human quantity: a bandwidth or a size.
type unit struct {
	name string
	mult int64 // value of 1 of this unit, in bits or bytes
	bits bool  // mult counts bits, so the value is divided by 8
}

const (
	kilo = 1000
	mega = 1000 * kilo
	giga = 1000 * mega
	tera = 1000 * giga
	kibi = 1 << 10
	mebi = 1 << 20
	gibi = 1 << 30
	tebi = 1 << 40
)

// quantity is a number and its unit split apart, before scaling.
type quantity struct {
	num  string // digits with an optional fraction: "10", "1.5"
	unit string // what follows the number, spaces between them dropped
}

// splitQuantity splits "10Gbps" or "1.5 GiB/s" into number and unit.
// When s is empty, negative or has no number, problem says so in words
// that fit after the quoted value ("does not start with a number").
func splitQuantity(s string) (q quantity, problem string) {
	t := strings.TrimSpace(s)
	if t == "" {
		return q, "is empty"
	}
	if t[0] == '-' {
		return q, "is negative"
	}
	t = strings.TrimPrefix(t, "+")
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return q, "does not start with a number"
	}
	if i < len(t) && t[i] == '.' {
		j := i + 1
		for j < len(t) && t[j] >= '0' && t[j] <= '9' {
			j++
		}
		if j == i+1 {
			return q, "has a '.' with no digits after it"
		}
		i = j
	}
	return quantity{num: t[:i], unit: strings.TrimLeft(t[i:], " \t")}, ""
}

// lookupUnit finds name in units exactly; b means bit and B byte, so the
// match is case-sensitive. When there is no exact match, hint names the
// unit that matches without regard to case, if any.
func lookupUnit(units []unit, name string) (u unit, ok bool, hint string) {
	for _, u := range units {
		if u.name == name {
			return u, true, ""
		}
	}
	for _, u := range units {
		if strings.EqualFold(u.name, name) {
			return unit{}, false, u.name
		}
	}
	return unit{}, false, ""
}

// scale returns num (a decimal such as "1.5") times u exactly. It fails
// when the result is not a whole number of bytes or does not fit an int64.
func scale(num string, u unit) (n int64, whole, fits bool) {
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, false, false // splitQuantity only lets digits through
	}
	r.Mul(r, new(big.Rat).SetInt64(u.mult))
	if u.bits {
		r.Quo(r, big.NewRat(8, 1))
	}
	if !r.IsInt() {
		return 0, false, true
	}
	v := r.Num()
	if !v.IsInt64() {
		return 0, true, false
	}
	return v.Int64(), true, true
}

// formatScaled writes v with the largest unit of units that divides it
// evenly; units are tried in order, so list larger ones first.
func formatScaled(v int64, units []unit) string {
	for _, u := range units {
		if u.mult > 1 && v%u.mult == 0 {
			return fmt.Sprintf("%d%s", v/u.mult, u.name)
		}
	}
	return fmt.Sprintf("%d%s", v, units[len(units)-1].name)
}
