package opencode

import "encoding/json"

// Health is GET /global/health.
type Health struct {
	Healthy bool   `json:"healthy"`
	Version string `json:"version"`
}

// Session is an opencode session (fields taosagent uses).
type Session struct {
	ID        string `json:"id"`
	Title     string `json:"title"`
	Directory string `json:"directory"`
}

// Status is a session's status. opencode leaves idle sessions out of
// GET /session/status, so a missing entry means idle.
type Status struct {
	Type    string `json:"type"` // "idle", "busy" or "retry"
	Attempt int    `json:"attempt,omitempty"`
	Message string `json:"message,omitempty"`
	Next    int64  `json:"next,omitempty"` // epoch ms of the next retry
}

// ToolRef names the tool call a request belongs to.
type ToolRef struct {
	MessageID string `json:"messageID"`
	CallID    string `json:"callID"`
}

// PermissionRequest is a pending "ask" (GET /permission, permission.asked).
type PermissionRequest struct {
	ID         string          `json:"id"`
	SessionID  string          `json:"sessionID"`
	Permission string          `json:"permission"`
	Patterns   []string        `json:"patterns"`
	Metadata   json.RawMessage `json:"metadata,omitempty"`
	Always     []string        `json:"always"`
	Tool       *ToolRef        `json:"tool,omitempty"`
}

// QuestionRequest is a pending question of the question tool.
type QuestionRequest struct {
	ID        string          `json:"id"`
	SessionID string          `json:"sessionID"`
	Questions json.RawMessage `json:"questions"`
	Tool      *ToolRef        `json:"tool,omitempty"`
}

// Tokens is opencode's token accounting.
type Tokens struct {
	Total     int `json:"total,omitempty"`
	Input     int `json:"input"`
	Output    int `json:"output"`
	Reasoning int `json:"reasoning"`
	Cache     struct {
		Read  int `json:"read"`
		Write int `json:"write"`
	} `json:"cache"`
}

// MessageError is the error of a failed assistant message or session.error.
type MessageError struct {
	Name string `json:"name"`
	Data struct {
		Message     string `json:"message"`
		StatusCode  int    `json:"statusCode,omitempty"`
		IsRetryable bool   `json:"isRetryable,omitempty"`
	} `json:"data"`
}

// MessageInfo is a message's header.
type MessageInfo struct {
	ID         string        `json:"id"`
	SessionID  string        `json:"sessionID"`
	Role       string        `json:"role"` // "user" or "assistant"
	ParentID   string        `json:"parentID,omitempty"`
	Finish     string        `json:"finish,omitempty"`
	Error      *MessageError `json:"error,omitempty"`
	Cost       float64       `json:"cost,omitempty"`
	Tokens     *Tokens       `json:"tokens,omitempty"`
	ModelID    string        `json:"modelID,omitempty"`    // an assistant message's model
	ProviderID string        `json:"providerID,omitempty"` // and its provider
	Time       struct {
		Created   int64 `json:"created"`
		Completed int64 `json:"completed,omitempty"`
	} `json:"time"`
}

// ToolState is the state of a tool part.
type ToolState struct {
	Status string          `json:"status"` // pending, running, completed, error
	Input  json.RawMessage `json:"input,omitempty"`
	Output string          `json:"output,omitempty"`
	Error  string          `json:"error,omitempty"`
	Title  string          `json:"title,omitempty"`
	Time   struct {
		Start int64 `json:"start,omitempty"`
		End   int64 `json:"end,omitempty"`
	} `json:"time"`
}

// Part is one part of a message: text, reasoning, tool, step-start,
// step-finish and others taosagent passes over.
type Part struct {
	ID        string     `json:"id"`
	MessageID string     `json:"messageID"`
	SessionID string     `json:"sessionID"`
	Type      string     `json:"type"`
	Text      string     `json:"text,omitempty"`
	Synthetic bool       `json:"synthetic,omitempty"`
	Tool      string     `json:"tool,omitempty"`
	CallID    string     `json:"callID,omitempty"`
	State     *ToolState `json:"state,omitempty"`
	Reason    string     `json:"reason,omitempty"` // step-finish
	Tokens    *Tokens    `json:"tokens,omitempty"` // step-finish
	Cost      float64    `json:"cost,omitempty"`   // step-finish
	Time      *struct {
		Start int64 `json:"start,omitempty"`
		End   int64 `json:"end,omitempty"`
	} `json:"time,omitempty"`
}

// Message is one entry of GET /session/{id}/message.
type Message struct {
	Info  MessageInfo `json:"info"`
	Parts []Part      `json:"parts"`
}

// Prompt is the body of prompt_async: text parts and an optional model.
type Prompt struct {
	Text       string
	ProviderID string // with ModelID, overrides the configured model
	ModelID    string
	Agent      string
	MessageID  string // client-chosen id for the user message ("msg_…")
}

func (p Prompt) body() any {
	b := map[string]any{"parts": []map[string]string{{"type": "text", "text": p.Text}}}
	if p.ModelID != "" {
		b["model"] = map[string]string{"providerID": p.ProviderID, "modelID": p.ModelID}
	}
	if p.Agent != "" {
		b["agent"] = p.Agent
	}
	if p.MessageID != "" {
		b["messageID"] = p.MessageID
	}
	return b
}
