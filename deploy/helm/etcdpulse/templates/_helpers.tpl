{{/* Names, labels and the settings every template shares. */}}

{{- define "etcdpulse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "etcdpulse.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "etcdpulse.namespace" -}}
{{- default .Release.Namespace .Values.namespace.name }}
{{- end }}

{{- define "etcdpulse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "etcdpulse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "etcdpulse.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "etcdpulse.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "etcdpulse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "etcdpulse.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "etcdpulse.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "etcdpulse.webConfigSecret" -}}
{{- default (printf "%s-web-config" (include "etcdpulse.fullname" .)) .Values.web.config.existingSecret }}
{{- end }}

{{/*
etcdpulse.web returns, as YAML, how the agent serves: tls (HTTPS) and
basicAuth. From web.config.content when the chart makes the Secret; from the
monitors' scheme and basicAuth with an existing Secret, which the chart
cannot read.
*/}}
{{- define "etcdpulse.web" -}}
{{- $c := .Values.web.config }}
{{- $tls := false }}
{{- $auth := false }}
{{- if $c.enabled }}
{{- if $c.existingSecret }}
{{- $tls = or (eq .Values.podMonitor.scheme "https") (eq .Values.serviceMonitor.scheme "https") }}
{{- $auth = or (not (empty .Values.podMonitor.basicAuth)) (not (empty .Values.serviceMonitor.basicAuth)) }}
{{- else }}
{{- $tls = hasKey $c.content "tls_server_config" }}
{{- $auth = hasKey $c.content "basic_auth_users" }}
{{- end }}
{{- end }}
tls: {{ $tls }}
basicAuth: {{ $auth }}
{{- end }}

{{/*
etcdpulse.scrapeEndpoint renders the settings a PodMonitor's or a
ServiceMonitor's endpoint share. Call with (list $ .Values.podMonitor).
*/}}
{{- define "etcdpulse.scrapeEndpoint" -}}
{{- $ := index . 0 }}
{{- $m := index . 1 }}
{{- $web := include "etcdpulse.web" $ | fromYaml }}
{{- $scheme := $m.scheme | default $.Values.podMonitor.scheme | default (ternary "https" "http" $web.tls) }}
port: metrics
path: /metrics
scheme: {{ $scheme }}
{{- with $m.interval }}
interval: {{ . }}
{{- end }}
{{- with $m.scrapeTimeout }}
scrapeTimeout: {{ . }}
{{- end }}
{{- with $m.tlsConfig }}
tlsConfig:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $m.basicAuth }}
basicAuth:
  {{- toYaml . | nindent 2 }}
{{- end }}
relabelings:
  - action: replace
    targetLabel: cluster
    replacement: {{ $.Values.cluster | quote }}
  - action: replace
    sourceLabels: [__meta_kubernetes_pod_node_name]
    targetLabel: node
  {{- with $m.relabelings }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $m.metricRelabelings }}
metricRelabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* etcdpulse.args renders the agent's flags as a YAML list. */}}
{{- define "etcdpulse.args" -}}
{{- $s := include "etcdpulse.settings" . | fromYaml }}
{{- $a := list (printf "--web.listen-address=:%v" .Values.web.port) }}
{{- range $s.endpoints }}
{{- $a = append $a (printf "--etcd.endpoints=%s" .) }}
{{- end }}
{{- with $s.caFile }}
{{- $a = append $a (printf "--etcd.tls.ca-file=%s" .) }}
{{- end }}
{{- with $s.certFile }}
{{- $a = append $a (printf "--etcd.tls.cert-file=%s" .) }}
{{- end }}
{{- with $s.keyFile }}
{{- $a = append $a (printf "--etcd.tls.key-file=%s" .) }}
{{- end }}
{{- $a = append $a (printf "--etcd.data-dir=%s" $s.dataDir) }}
{{- with $s.walDir }}
{{- $a = append $a (printf "--etcd.wal-dir=%s" .) }}
{{- end }}
{{- with $s.metricsURL }}
{{- $a = append $a (printf "--etcd.metrics-url=%s" .) }}
{{- end }}
{{- if .Values.disk.enabled }}
{{- $a = append $a (printf "--disk.probe-dir=%s" $s.probeDir) }}
{{- else }}
{{- $a = append $a "--no-disk.enabled" }}
{{- end }}
{{- with $s.certificatesDir }}
{{- $a = append $a (printf "--certificates.dir=%s" .) }}
{{- end }}
{{- range $s.backupDirs }}
{{- $a = append $a (printf "--backups.dirs=%s" .) }}
{{- end }}
{{- if not .Values.processMetrics.enabled }}
{{- /* An empty name and no PID file: no process metrics, the host's still. */}}
{{- $a = append $a "--host.process-name=" }}
{{- else if $s.pidFile }}
{{- $a = append $a (printf "--host.pid-file=%s" $s.pidFile) }}
{{- else }}
{{- $a = append $a (printf "--host.process-name=%s" $s.processName) }}
{{- end }}
{{- if .Values.etcd.readOnly }}
{{- $a = append $a "--etcd.read-only" }}
{{- end }}
{{- if .Values.etcd.quotaBackendBytes }}
{{- $a = append $a (printf "--etcd.quota-backend-bytes=%d" (int64 .Values.etcd.quotaBackendBytes)) }}
{{- end }}
{{- if .Values.web.config.enabled }}
{{- $a = append $a "--web.config.file=/etc/etcdpulse/web/web-config.yml" }}
{{- end }}
{{- concat $a .Values.extraArgs | toYaml }}
{{- end }}
