package main

import (
	"bytes"
	"encoding/json"
	"io"
)

// toJSON marshals plain data; it returns null if v cannot be marshalled.
func toJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage("null")
	}
	return b
}

// printJSONLine writes v as one JSON line, with no HTML escaping.
func printJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// jsonStringValue encodes s as a JSON string, with no HTML escaping.
func jsonStringValue(s string) json.RawMessage {
	var b bytes.Buffer
	if printJSONLine(&b, s) != nil {
		return json.RawMessage("null")
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}
