package reward

import (
	"strings"

	"github.com/tpoproject/tpo"
)

// lastUser returns the content of the last user turn of messages.
func lastUser(messages []tpo.Message) string {
	return tpo.Item{Messages: messages}.Prompt()
}

// FlattenPrompt renders a conversation as the single prompt text that
// pair-input reward models (TEI's /predict) take, for a response that
// answers its last user turn.
//
// A single-turn conversation (one user turn, with or without system turns)
// gives the user turn's text alone: pair classifiers were trained on bare
// question/answer pairs, and a generic system prompt would only add noise.
// A multi-turn conversation gives every turn up to and including the last
// user turn, system turns included, each as "Role: content", separated by
// blank lines, for example
//
//	User: What is 2+2?
//
//	Assistant: 4.
//
//	User: And times 3?
//
// Turns after the last user turn are ignored.
func FlattenPrompt(messages []tpo.Message) string {
	last := -1
	turns := 0
	for i, m := range messages {
		if m.Role == tpo.RoleUser {
			last = i
		}
	}
	if last < 0 {
		return ""
	}
	for _, m := range messages[:last+1] {
		if m.Role != tpo.RoleSystem {
			turns++
		}
	}
	if turns == 1 {
		return messages[last].Content
	}
	var b strings.Builder
	for i, m := range messages[:last+1] {
		if i > 0 {
			b.WriteString("\n\n")
		}
		b.WriteString(roleName(m.Role))
		b.WriteString(": ")
		b.WriteString(m.Content)
	}
	return b.String()
}

// roleName capitalizes a role for plain-text transcripts.
func roleName(role string) string {
	switch role {
	case tpo.RoleSystem:
		return "System"
	case tpo.RoleUser:
		return "User"
	case tpo.RoleAssistant:
		return "Assistant"
	}
	if role == "" {
		return "Unknown"
	}
	return strings.ToUpper(role[:1]) + role[1:]
}

// withResponse returns the conversation followed by an assistant turn
// holding response, without modifying messages.
func withResponse(messages []tpo.Message, response string) []tpo.Message {
	out := make([]tpo.Message, 0, len(messages)+1)
	out = append(out, messages...)
	return append(out, tpo.Message{Role: tpo.RoleAssistant, Content: response})
}
