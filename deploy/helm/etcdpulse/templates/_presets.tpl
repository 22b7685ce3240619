{{/*
The distributions' presets, in this one place. etcdpulse.presets returns
a dict of presets by distribution; etcdpulse.settings merges the chosen one
with the user's values (a non-empty value wins) and derives the rest. Every
other template reads etcdpulse.settings only.

| | kubeadm | k3s | rke2 | k0s | external |
|---|---|---|---|---|---|
| certDir | /etc/kubernetes/pki/etcd | /var/lib/rancher/k3s/server/tls/etcd | /var/lib/rancher/rke2/server/tls/etcd | /var/lib/k0s/pki | /etc/etcd/pki |
| certificatesDir | /etc/kubernetes/pki/etcd | /var/lib/rancher/k3s/server/tls/etcd | /var/lib/rancher/rke2/server/tls/etcd | /var/lib/k0s/pki/etcd | /etc/etcd/pki |
| dataDir | /var/lib/etcd | /var/lib/rancher/k3s/server/db/etcd | /var/lib/rancher/rke2/server/db/etcd | /var/lib/k0s/etcd | /var/lib/etcd |
| backupDirs | | /var/lib/rancher/k3s/server/db/snapshots | /var/lib/rancher/rke2/server/db/snapshots | | |
| node role | control-plane | etcd | etcd | control-plane | etcd |

Node role labels are "" on kubeadm and "true" elsewhere: always operator
Exists.
*/}}
{{- define "etcdpulse.presets" -}}
{{- $tolerations := list
  (dict "key" "node-role.kubernetes.io/control-plane" "operator" "Exists")
  (dict "key" "node-role.kubernetes.io/master" "operator" "Exists")
  (dict "key" "node-role.kubernetes.io/etcd" "operator" "Exists")
  (dict "key" "CriticalAddonsOnly" "operator" "Exists") }}
{{- $endpoints := list "https://127.0.0.1:2379" }}
{{- $kubeadm := dict
  "endpoints" $endpoints
  "certificatesDir" "/etc/kubernetes/pki/etcd"
  "certDir" "/etc/kubernetes/pki/etcd"
  "caFile" "/etc/kubernetes/pki/etcd/ca.crt"
  "certFile" "/etc/kubernetes/pki/etcd/healthcheck-client.crt"
  "keyFile" "/etc/kubernetes/pki/etcd/healthcheck-client.key"
  "dataDir" "/var/lib/etcd"
  "metricsURL" "http://127.0.0.1:2381/metrics"
  "processName" "etcd"
  "nodeRole" "node-role.kubernetes.io/control-plane"
  "tolerations" $tolerations
  "backupDirs" (list)
  "capabilities" (list) }}
{{- $k3s := dict
  "endpoints" $endpoints
  "certificatesDir" "/var/lib/rancher/k3s/server/tls/etcd"
  "certDir" "/var/lib/rancher/k3s/server/tls/etcd"
  "caFile" "/var/lib/rancher/k3s/server/tls/etcd/server-ca.crt"
  "certFile" "/var/lib/rancher/k3s/server/tls/etcd/client.crt"
  "keyFile" "/var/lib/rancher/k3s/server/tls/etcd/client.key"
  "dataDir" "/var/lib/rancher/k3s/server/db/etcd"
  "metricsURL" "http://127.0.0.1:2381/metrics"
  "processName" "k3s-server"
  "nodeRole" "node-role.kubernetes.io/etcd"
  "tolerations" $tolerations
  "backupDirs" (list "/var/lib/rancher/k3s/server/db/snapshots")
  "capabilities" (list) }}
{{- $rke2 := dict
  "endpoints" $endpoints
  "certificatesDir" "/var/lib/rancher/rke2/server/tls/etcd"
  "certDir" "/var/lib/rancher/rke2/server/tls/etcd"
  "caFile" "/var/lib/rancher/rke2/server/tls/etcd/server-ca.crt"
  "certFile" "/var/lib/rancher/rke2/server/tls/etcd/client.crt"
  "keyFile" "/var/lib/rancher/rke2/server/tls/etcd/client.key"
  "dataDir" "/var/lib/rancher/rke2/server/db/etcd"
  "metricsURL" "http://127.0.0.1:2381/metrics"
  "processName" "etcd"
  "nodeRole" "node-role.kubernetes.io/etcd"
  "tolerations" $tolerations
  "backupDirs" (list "/var/lib/rancher/rke2/server/db/snapshots")
  "capabilities" (list) }}
{{- /* k0s: the data directory is 0700, owned by the etcd user: root without
DAC_READ_SEARCH cannot enter it to measure the WAL's filesystem. The client
key (0640, owner kube-apiserver, group root) is read through the group. */}}
{{- $k0s := dict
  "endpoints" $endpoints
  "certificatesDir" "/var/lib/k0s/pki/etcd"
  "certDir" "/var/lib/k0s/pki"
  "caFile" "/var/lib/k0s/pki/etcd/ca.crt"
  "certFile" "/var/lib/k0s/pki/apiserver-etcd-client.crt"
  "keyFile" "/var/lib/k0s/pki/apiserver-etcd-client.key"
  "dataDir" "/var/lib/k0s/etcd"
  "metricsURL" "https://127.0.0.1:2379/metrics"
  "processName" "etcd"
  "pidFile" "/run/k0s/etcd.pid"
  "nodeRole" "node-role.kubernetes.io/control-plane"
  "tolerations" $tolerations
  "backupDirs" (list)
  "capabilities" (list "DAC_READ_SEARCH") }}
{{- $external := dict
  "endpoints" $endpoints
  "certificatesDir" "/etc/etcd/pki"
  "certDir" "/etc/etcd/pki"
  "caFile" "/etc/etcd/pki/ca.crt"
  "certFile" "/etc/etcd/pki/client.crt"
  "keyFile" "/etc/etcd/pki/client.key"
  "dataDir" "/var/lib/etcd"
  "processName" "etcd"
  "nodeRole" "node-role.kubernetes.io/etcd"
  "tolerations" $tolerations
  "backupDirs" (list)
  "capabilities" (list) }}
{{- dict "kubeadm" $kubeadm "k3s" $k3s "rke2" $rke2 "k0s" $k0s "external" $external | toYaml }}
{{- end }}

{{/*
etcdpulse.settings returns, as YAML, the preset of .Values.distribution
merged with the user's values, and what follows from them: probeDir,
walMount, pidDir, affinity, tolerations, capabilities. It fails the render on
a distribution without a preset and on a probe directory inside the
member's directory.
*/}}
{{- define "etcdpulse.settings" -}}
{{- $presets := include "etcdpulse.presets" . | fromYaml }}
{{- $d := .Values.distribution }}
{{- if not (hasKey $presets $d) }}
{{- fail (printf "distribution %q has no preset: use one of %s" (toString $d) (keys $presets | sortAlpha | join ", ")) }}
{{- end }}
{{- $s := deepCopy (index $presets $d) }}
{{- range $k, $v := .Values.etcd }}
{{- if not (empty $v) }}
{{- $_ := set $s $k $v }}
{{- end }}
{{- end }}
{{- if eq (toString $s.metricsURL) "-" }}
{{- $_ := set $s "metricsURL" "" }}
{{- end }}
{{- $data := clean $s.dataDir }}
{{- $_ := set $s "dataDir" $data }}
{{- /* The WAL outside the data directory needs a mount of its own. */}}
{{- $wal := "" }}
{{- with $s.walDir }}
{{- $wal = clean . }}
{{- $_ := set $s "walDir" $wal }}
{{- end }}
{{- $walOutside := false }}
{{- if and $wal (ne $wal $data) (not (hasPrefix (printf "%s/" $data) $wal)) }}
{{- $walOutside = true }}
{{- end }}
{{- $_ = set $s "walMount" (ternary $wal "" $walOutside) }}
{{- /* The agent's own default: beside the WAL directory when it lies outside the data directory, else beside the data directory. */}}
{{- $probe := .Values.disk.probeDir }}
{{- if not $probe }}
{{- $probe = printf "%s/.etcdpulse-probe" (dir (ternary $wal $data $walOutside)) }}
{{- end }}
{{- $probe = clean $probe }}
{{- $member := printf "%s/member" $data }}
{{- if and .Values.disk.enabled (or (eq $probe $member) (hasPrefix (printf "%s/" $member) $probe)) }}
{{- fail (printf "disk.probeDir %q is inside %s, etcd's own directory: choose a directory outside it, such as %s/.etcdpulse-probe" $probe $member (dir $data)) }}
{{- end }}
{{- $_ = set $s "probeDir" $probe }}
{{- /* certificates.dir: the user's ("-": none), else the user's certDir, else the preset's; mounted on its own when outside certDir. */}}
{{- $cd := .Values.certificates.dir | default (ternary $s.certDir $s.certificatesDir (not (empty .Values.etcd.certDir))) | toString }}
{{- if eq $cd "-" }}
{{- $cd = "" }}
{{- end }}
{{- $cd = ternary (clean $cd) "" (ne $cd "") }}
{{- $_ = set $s "certificatesDir" $cd }}
{{- $certs := clean $s.certDir }}
{{- $_ = set $s "certificatesMount" (ternary $cd "" (and (ne $cd "") (ne $cd $certs) (not (hasPrefix (printf "%s/" $certs) $cd)))) }}
{{- /* backups.dirs: the user's (["-"]: none), else the preset's; each mounted read-only. k3s and RKE2 keep their snapshots beside the etcd directory (db/snapshots beside db/etcd): with the user's dataDir, beside that. */}}
{{- $presetBackups := $s.backupDirs }}
{{- if and $presetBackups .Values.etcd.dataDir }}
{{- $presetBackups = list (printf "%s/snapshots" (dir $data)) }}
{{- end }}
{{- $bd := .Values.backups.dirs | default $presetBackups }}
{{- if and $bd (eq (toString (first $bd)) "-") }}
{{- $bd = list }}
{{- end }}
{{- $clean := list }}
{{- range $bd }}
{{- $clean = append $clean (clean (toString .)) }}
{{- end }}
{{- $_ = set $s "backupDirs" $clean }}
{{- $_ = set $s "pidDir" (ternary (dir (toString $s.pidFile)) "" (not (empty $s.pidFile))) }}
{{- if .Values.tolerations }}
{{- $_ = set $s "tolerations" .Values.tolerations }}
{{- end }}
{{- $affinity := .Values.affinity }}
{{- if not $affinity }}
{{- $term := dict "matchExpressions" (list (dict "key" $s.nodeRole "operator" "Exists")) }}
{{- $affinity = dict "nodeAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (dict "nodeSelectorTerms" (list $term))) }}
{{- end }}
{{- $_ = set $s "affinity" $affinity }}
{{- toYaml $s }}
{{- end }}
