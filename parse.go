package tpo

import (
	"strings"
	"unicode/utf8"
)

// parseImproved extracts the new response from an update sample: the content
// of the last closed, non-empty <improved_response>...</improved_response>
// block, with surrounding white space removed, so that what a model writes
// after the block (such as "I put the answer inside <improved_response>
// tags.") is never taken for the answer. Only when no block is closed does it
// accept an unclosed one, the text after the last opening tag (the model was
// cut off or forgot the closing tag), and report unclosed. Tags match
// case-insensitively and may hold white space inside the angle brackets. An
// opening tag followed by another before any closing tag is ignored. ok is
// false when no block with content is found.
func parseImproved(s string) (text string, unclosed, ok bool) {
	lower := asciiLower(s)
	var closed, open string
	for pos := 0; ; {
		o, oend := findTag(lower, pos, "improved_response", false)
		if o < 0 {
			break
		}
		c, cend := findTag(lower, oend, "improved_response", true)
		if n, _ := findTag(lower, oend, "improved_response", false); n >= 0 && (c < 0 || n < c) {
			pos = n // a malformed block: start again from the later tag
			continue
		}
		if c < 0 {
			open = strings.TrimSpace(s[oend:])
			break
		}
		if t := strings.TrimSpace(s[oend:c]); t != "" {
			closed = t
		}
		pos = cend
	}
	switch {
	case closed != "":
		return closed, false, true
	case open != "":
		return open, true, true
	}
	return "", false, false
}

// asciiLower lower-cases ASCII letters only, so that byte offsets in the
// result are offsets in s (strings.ToLower may change lengths).
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// findTag finds <name> (or </name> when closing) in lower, which must be
// lower-cased, from position from. It tolerates spaces inside the brackets.
// It returns the start and end of the tag, or -1, -1.
func findTag(lower string, from int, name string, closing bool) (int, int) {
	for i := from; i < len(lower); {
		j := strings.IndexByte(lower[i:], '<')
		if j < 0 {
			return -1, -1
		}
		start := i + j
		k := start + 1
		k = skipSpace(lower, k)
		if closing {
			if k >= len(lower) || lower[k] != '/' {
				i = start + 1
				continue
			}
			k = skipSpace(lower, k+1)
		}
		if !strings.HasPrefix(lower[k:], name) {
			i = start + 1
			continue
		}
		k = skipSpace(lower, k+len(name))
		if k < len(lower) && lower[k] == '>' {
			return start, k + 1
		}
		i = start + 1
	}
	return -1, -1
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// truncationMark ends a text cut to fit the prompt budget.
const truncationMark = "\n[... truncated]"

// truncate cuts s to at most max bytes (counting the truncation mark), at a
// UTF-8 boundary and preferably at a line or word break, and marks the cut.
// A max of zero or less means no limit.
func truncate(s string, max int) string {
	if max <= 0 || len(s) <= max {
		return s
	}
	keep := max - len(truncationMark)
	if keep <= 0 {
		keep = max
	}
	if keep > len(s) {
		keep = len(s)
	}
	for keep > 0 && !utf8.RuneStart(s[keep]) {
		keep--
	}
	cut := s[:keep]
	// Prefer a break in the last fifth of what is kept.
	if i := strings.LastIndexAny(cut, "\n "); i > keep*4/5 {
		cut = cut[:i]
	}
	return cut + truncationMark
}

// renderQuery returns what the critique and update prompts show as the
// request: the last user turn alone for a single-turn conversation (with no
// system prompt), otherwise the whole conversation as a transcript.
func renderQuery(msgs []Message) string {
	if len(msgs) == 1 && msgs[0].Role == RoleUser {
		return msgs[0].Content
	}
	var b strings.Builder
	for i, m := range msgs {
		if i > 0 {
			b.WriteString("\n\n")
		}
		switch m.Role {
		case RoleSystem:
			b.WriteString("[System]\n")
		case RoleUser:
			b.WriteString("[User]\n")
		case RoleAssistant:
			b.WriteString("[Assistant]\n")
		default:
			b.WriteString("[" + m.Role + "]\n")
		}
		b.WriteString(m.Content)
	}
	return b.String()
}
