package eventlog
