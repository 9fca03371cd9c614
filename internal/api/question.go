package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Question is a request of opencode's question tool, persisted by
// taosagent: the model asks a person one or more questions and its turn
// waits for the answers.
type Question struct {
	ID        string         `json:"id"`
	Agent     string         `json:"agent"`
	Turn      string         `json:"turn"`
	Session   string         `json:"session"`
	Seq       int64          `json:"seq"`
	CallID    string         `json:"call_id,omitempty"`
	Questions []QuestionInfo `json:"questions"`
	State     string         `json:"state"`
	Answers   [][]string     `json:"answers,omitempty"`
	By        string         `json:"by,omitempty"`
	Message   string         `json:"message,omitempty"`
	Created   time.Time      `json:"created"`
	Resolved  *time.Time     `json:"resolved,omitempty"`
}

// QuestionInfo is one question of a request, as opencode 1.18.33 asks it.
// Text written by the model: shown to a person as text, never as markup.
type QuestionInfo struct {
	Question string           `json:"question"`
	Header   string           `json:"header"`
	Options  []QuestionOption `json:"options"`
	Multiple bool             `json:"multiple,omitempty"`
	// Custom is whether an answer may be text of the person's own, not
	// one of the options: opencode's default (absent) is yes.
	Custom *bool `json:"custom,omitempty"`
}

// QuestionOption is one choice a question offers.
type QuestionOption struct {
	Label       string `json:"label"`
	Description string `json:"description"`
}

// AnswerRequest is a person's answer to a question request: one list of
// chosen labels (or text of their own) per question, in order; or a
// refusal to answer (reject), which ends the question tool's call with an
// error the model sees.
type AnswerRequest struct {
	Answers [][]string `json:"answers,omitempty"`
	Reject  bool       `json:"reject,omitempty"`
}

// Question states.
const (
	QuestionPending  = "pending"
	QuestionAnswered = "answered"
	QuestionRejected = "rejected"
	QuestionExpired  = "expired" // its request went away unanswered
)

// CheckQuestionState returns nil if state is a question's state, or ""
// (every state).
func CheckQuestionState(state string) error {
	switch state {
	case "", QuestionPending, QuestionAnswered, QuestionRejected, QuestionExpired:
		return nil
	}
	return fmt.Errorf("state: must be %s, %s, %s or %s", QuestionPending, QuestionAnswered, QuestionRejected, QuestionExpired)
}

// MaxAnswer is the longest text a person may give as one answer.
const MaxAnswer = 4096

// CheckAnswer returns nil if a fits the questions qs: a reject carries no
// answers; otherwise one answer per question, each with at least one
// entry, exactly one unless the question takes several, each entry one of
// its options' labels or, where the question takes text of one's own, at
// most MaxAnswer bytes of it. An error reads "field: reason".
func CheckAnswer(qs []QuestionInfo, a AnswerRequest) error {
	if a.Reject {
		if len(a.Answers) > 0 {
			return errors.New("answers: a reject carries none")
		}
		return nil
	}
	if len(a.Answers) != len(qs) {
		return fmt.Errorf("answers: want one per question (%d), got %d", len(qs), len(a.Answers))
	}
	for i, q := range qs {
		ans := a.Answers[i]
		switch {
		case len(ans) == 0:
			return fmt.Errorf("answers[%d]: empty; to decline, reject the request", i)
		case len(ans) > 1 && !q.Multiple:
			return fmt.Errorf("answers[%d]: %q takes one answer, got %d", i, q.Header, len(ans))
		case len(ans) > max(len(q.Options), 1) && (q.Custom != nil && !*q.Custom):
			return fmt.Errorf("answers[%d]: more answers than options", i)
		}
		for j, s := range ans {
			known := slices.ContainsFunc(q.Options, func(o QuestionOption) bool { return o.Label == s })
			switch {
			case s == "":
				return fmt.Errorf("answers[%d][%d]: empty", i, j)
			case len(s) > MaxAnswer:
				return fmt.Errorf("answers[%d][%d]: longer than %d bytes", i, j, MaxAnswer)
			case !known && q.Custom != nil && !*q.Custom:
				return fmt.Errorf("answers[%d][%d]: %q is not one of the options, and the question takes no answer of one's own", i, j, s)
			case slices.Index(ans, s) != j:
				return fmt.Errorf("answers[%d][%d]: %q given twice", i, j, s)
			}
		}
	}
	return nil
}

// ParseQuestions decodes the questions of a question.asked event's data.
func ParseQuestions(raw json.RawMessage) ([]QuestionInfo, error) {
	var qs []QuestionInfo
	if err := json.Unmarshal(raw, &qs); err != nil {
		return nil, fmt.Errorf("questions: %w", err)
	}
	return qs, nil
}
