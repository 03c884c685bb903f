package main

import (
	"fmt"
	"strings"
)

// plural returns n and the noun in the form that agrees with it:
// plural(1, "item", "items") is "1 item", plural(3, ...) "3 items".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// pick returns one when n is 1, else many: the words that agree with n.
func pick(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// maxListed is how many ids a message lists before it says how many more
// there are.
const maxListed = 10

// idList joins at most max ids, saying how many more there are:
// "a, b, c and 795 more".
func idList(ids []string, max int) string {
	if len(ids) <= max {
		return strings.Join(ids, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ids[:max], ", "), len(ids)-max)
}

// shellQuote quotes s for a POSIX shell when it needs quoting, so that a
// command printed for the user can be pasted as it is.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@+,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
