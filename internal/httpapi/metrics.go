package httpapi

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/taosagent/taosagent/internal/api"
)

// metrics answers GET /metrics in Prometheus's text format (0.0.4): turns
// by agent and state, approvals waiting, each agent's queue and instance
// (up, memory, CPU), model use through the gateway, and the log's head.
// It is behind the same auth as the API.
//
// It is long: one block per metric, in the order they are printed.
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var b strings.Builder
	family := func(name, typ, help string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	sample := func(name string, v float64, labels ...string) {
		b.WriteString(name)
		if len(labels) > 0 {
			b.WriteByte('{')
			for i := 0; i < len(labels); i += 2 {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(labels[i] + "=" + strconv.Quote(labels[i+1]))
			}
			b.WriteByte('}')
		}
		b.WriteString(" " + strconv.FormatFloat(v, 'g', -1, 64) + "\n")
	}

	counts, err := s.Log.TurnCounts(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	family("taosagent_turns_total", "counter", "Turns that ended, by agent and outcome (final or error), of those the log keeps.")
	for _, c := range counts {
		if c.State != "running" {
			sample("taosagent_turns_total", float64(c.N), "agent", c.Agent, "outcome", c.State)
		}
	}
	family("taosagent_turns_running", "gauge", "Turns running now, by agent.")
	for _, c := range counts {
		if c.State == "running" {
			sample("taosagent_turns_running", float64(c.N), "agent", c.Agent)
		}
	}
	pending, err := s.Log.Approvals(ctx, api.ApprovalPending)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	family("taosagent_approvals_pending", "gauge", "Approvals waiting for a person.")
	sample("taosagent_approvals_pending", float64(len(pending)))

	agents, err := s.Control.Agents(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	family("taosagent_agent_queued", "gauge", "Messages waiting in an agent's inbox.")
	for _, a := range agents {
		sample("taosagent_agent_queued", float64(a.Status.Queued), "agent", a.Name)
	}
	family("taosagent_instance_up", "gauge", "1 when an agent's opencode instance runs.")
	for _, a := range agents {
		up := 0.0
		if a.Status.PID > 0 {
			up = 1
		}
		sample("taosagent_instance_up", up, "agent", a.Name)
	}
	family("taosagent_instance_memory_bytes", "gauge", "Resident memory of an agent's running instance: every process under it (sandbox, opencode, tools).")
	family("taosagent_instance_cpu_seconds_total", "counter", "CPU time of an agent's running instance.")
	for _, a := range agents {
		if u := a.Status.Usage; u != nil {
			sample("taosagent_instance_memory_bytes", float64(u.MemoryBytes), "agent", a.Name)
			sample("taosagent_instance_cpu_seconds_total", float64(u.CPUMillis)/1000, "agent", a.Name)
		}
	}

	rows, err := s.Control.Usage(ctx, "", "", "")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	type key struct{ agent, model string }
	type sum struct {
		req, in, out int64
		cost         float64
	}
	sums := map[key]*sum{}
	var keys []key
	for _, u := range rows {
		k := key{u.Agent, u.Model}
		if sums[k] == nil {
			sums[k] = &sum{}
			keys = append(keys, k)
		}
		x := sums[k]
		x.req, x.in, x.out, x.cost = x.req+u.Requests, x.in+u.InputTokens, x.out+u.OutputTokens, x.cost+u.Cost
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].agent < keys[j].agent || (keys[i].agent == keys[j].agent && keys[i].model < keys[j].model)
	})
	family("taosagent_gateway_requests_total", "counter", "Model calls through the gateway, by agent and model.")
	for _, k := range keys {
		sample("taosagent_gateway_requests_total", float64(sums[k].req), "agent", k.agent, "model", k.model)
	}
	family("taosagent_gateway_tokens_total", "counter", "Tokens through the gateway, by agent, model and direction (input or output).")
	for _, k := range keys {
		sample("taosagent_gateway_tokens_total", float64(sums[k].in), "agent", k.agent, "model", k.model, "direction", "input")
		sample("taosagent_gateway_tokens_total", float64(sums[k].out), "agent", k.agent, "model", k.model, "direction", "output")
	}
	family("taosagent_gateway_cost_total", "counter", "Cost reported for model calls through the gateway, by agent and model.")
	for _, k := range keys {
		sample("taosagent_gateway_cost_total", sums[k].cost, "agent", k.agent, "model", k.model)
	}
	family("taosagent_events_head", "gauge", "The seq of the last event committed to the log.")
	sample("taosagent_events_head", float64(s.Log.Head()))

	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write([]byte(b.String()))
}
