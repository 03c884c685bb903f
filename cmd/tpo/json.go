package main

import "encoding/json"

// toJSON marshals plain data; it returns null if v cannot be marshalled.
func toJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage("null")
	}
	return b
}
