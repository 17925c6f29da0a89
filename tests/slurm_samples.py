"""Captured `scontrol -o` text for the fast tests of lab/sweeps/slurm.py."""

# `scontrol -a -o show partition` / `scontrol -o show node` as this machine's test Slurm (22.05) prints them.
ONE_NODE_PARTITION = (
    "PartitionName=debug AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=YES QoS=N/A "
    "DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO MaxNodes=UNLIMITED "
    "MaxTime=UNLIMITED MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=vm PriorityJobFactor=1 PriorityTier=1 "
    "RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE PreemptMode=OFF State=UP TotalCPUs=2 "
    "TotalNodes=1 SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED "
    "TRES=cpu=2,mem=24105M,node=1,billing=2\n")
ONE_NODE = (
    "NodeName=vm Arch=x86_64 CoresPerSocket=2  CPUAlloc=0 CPUEfctv=2 CPUTot=2 CPULoad=1.86 "
    "AvailableFeatures=(null) ActiveFeatures=(null) Gres=(null) NodeAddr=vm NodeHostName=vm Version=22.05.8 "
    "OS=Linux 6.18.44-fc-v669 #1 SMP PREEMPT_DYNAMIC @0  RealMemory=24105 AllocMem=0 FreeMem=18640 Sockets=1 "
    "Boards=1 State=IDLE ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A Partitions=debug  "
    "BootTime=2026-12-01T19:18:31 SlurmdStartTime=2026-12-01T19:29:40 CfgTRES=cpu=2,mem=24105M,billing=2 "
    "AllocTRES= CapWatts=n/a CurrentWatts=0 AveWatts=0 ExtSensorsJoules=n/s ExtSensorsWatts=0\n")
# A GPU cluster's partition in the same format: two-day limit, per-node CPU and memory caps, two node kinds.
GPU_PARTITIONS = ONE_NODE_PARTITION.replace("Default=YES", "Default=NO") + (
    "PartitionName=gpu AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=NO QoS=N/A "
    "DefaultTime=01:00:00 Hidden=NO MaxNodes=UNLIMITED MaxTime=2-00:00:00 MinNodes=0 LLN=NO MaxCPUsPerNode=64 "
    "Nodes=gpu[01-02] PreemptMode=REQUEUE State=UP TotalCPUs=224 TotalNodes=2 JobDefaults=DefCpuPerGPU=8 "
    "DefMemPerNode=UNLIMITED MaxMemPerNode=515000 TRES=cpu=224,mem=770000M,node=2,billing=224,gres/gpu=12\n")
GPU_NODES = (
    "NodeName=gpu01 Arch=x86_64 CoresPerSocket=32 CPUAlloc=16 CPUEfctv=128 CPUTot=128 CPULoad=12.01 "
    "Gres=gpu:a100:8(S:0-1) NodeAddr=gpu01 Version=23.02.7 OS=Linux 5.14.0-362.el9.x86_64 #1 SMP "
    "PREEMPT_DYNAMIC RealMemory=257000 AllocMem=131072 State=MIXED ThreadsPerCore=2 Partitions=gpu "
    "CfgTRES=cpu=128,mem=257000M,billing=128,gres/gpu=8 AllocTRES=cpu=16,mem=128G,gres/gpu=2\n"
    "NodeName=gpu02 Arch=x86_64 CoresPerSocket=24 CPUAlloc=0 CPUEfctv=96 CPUTot=96 Gres=gpu:v100:2,gpu:t4:2 "
    "RealMemory=1031000 State=DOWN+DRAIN ThreadsPerCore=2 Partitions=gpu Reason=Not responding "
    "[slurm@2026-11-01T10:00:00]\n")
