# The SeSAM pipeline of one benchmark, shared by pipelines/<benchmark>/Makefile (see pipelines/README.md).
#
# Per weak-label kind K (every word of KINDS), under $(WORK)/K/:
#   weak.jsonl          sesam records | sesam simulate: K labels for the training split (weak/)
#   shards/*.jsonl      per shard: decompose | sample-prompts | sam-predict | select (components/,
#                       prompts/, masks/, pseudo/, confidence/); SHARDS shards run in parallel with make -j
#   pseudo.jsonl        the shards' records, concatenated
#   pseudo-eval.json    sesam evaluate: SAM pseudo-labels against the training ground truth
#   train-0.jsonl       sesam train on weak + pseudo-labels (run in train-0/; torchrun when GPUS > 0)
#   refined-R.jsonl     round R = 1..ROUNDS: sesam refine with the network of round R-1 (refined-R/),
#   train-R.jsonl       and training again on the refined pseudo-labels (train-R/)
#   predictions.jsonl   the last network's predictions on the validation split (val-predictions/)
#   val-eval.json       sesam evaluate: those predictions against the validation ground truth
# and $(WORK)/val.jsonl, the validation split's records (id, image, gt), made by sesam records. For a
# SLURM array, `shard` makes shard SHARD of every kind's pseudo-labels and `refine-shard` shard SHARD
# of round ROUND's refinement (pipelines/slurm/sesam_array.sh).
#
# The including Makefile sets CLASSES (the class preset, with --void N when its files mark void so),
# KINDS, the training defaults ITERS, CROP and BATCH, and for each split (TRAIN_, VAL_): _RECORDS,
# the options of `sesam records` that make the split's records (--images, --key gt=..., on the
# training split optionally --key gt_instances=... for one weak annotation per object, --ids,
# --strip-suffix); and optionally _PREREQUISITES, files to make first.

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
.DELETE_ON_ERROR:
.SECONDARY:
.DEFAULT_GOAL := all

# --- what a user sets --------------------------------------------------------------------------------
WORK ?= work
SESAM ?= sesam
CHECKPOINT ?=
MODEL_TYPE ?= vit_h
GPUS ?= 0
SHARDS ?= 1
ROUNDS ?= 1
SEED ?= 0
SHARD ?= 0
ROUND ?= 1
ARCH ?= $(if $(filter 0,$(GPUS)),deeplabv3_mobilenet_v2,deeplabv3_resnet101)
WORKERS ?= 4
CHECKPOINT_EVERY ?= 1000
TORCHRUN ?= $(dir $(shell command -v $(SESAM)))torchrun
TORCHRUN_FLAGS ?= --standalone
SIMULATE_FLAGS ?=
DECOMPOSE_FLAGS ?=
PROMPT_FLAGS ?=
SAM_FLAGS ?=
SELECT_FLAGS ?=
TRAIN_FLAGS ?=
REFINE_FLAGS ?=
PREDICT_FLAGS ?=

# SMALL=1: a few iterations on small crops, for the tests and a quick look at a new dataset copy.
ifneq ($(SMALL),)
ITERS = 2
CROP = 64
BATCH = 2
WORKERS = 0
CHECKPOINT_EVERY = 0
endif

ifeq ($(filter help clean,$(MAKECMDGOALS)),)
ifeq ($(DATA),)
$(error DATA is not set: make DATA=/path/to/the/dataset (see `make help`))
endif
endif

# --- derived -----------------------------------------------------------------------------------------
W := $(WORK)
SHARD_INDICES := $(shell seq 0 $$(( $(SHARDS) - 1 )))
ROUND_NUMBERS := $(shell seq 1 $(ROUNDS))
LAST_ROUND := $(lastword 0 $(ROUND_NUMBERS))

# The SAM model: the default ONNX model (fetched once per WORK), or an official checkpoint file.
ifeq ($(CHECKPOINT),)
MODEL := $(W)/model-fetched
SAM_MODEL := --backend onnx
else
MODEL := $(CHECKPOINT)
SAM_MODEL := --backend sam --sam-checkpoint $(CHECKPOINT) --model-type $(MODEL_TYPE)
endif

ifeq ($(GPUS),0)
TRAIN := $(SESAM) train --device cpu
else
TRAIN := $(TORCHRUN) $(TORCHRUN_FLAGS) --nproc_per_node $(GPUS) --no-python $(SESAM) train --device cuda
endif
TRAIN_OPTIONS = --classes $(CLASSES) --arch $(ARCH) --iterations $(ITERS) --crop-size $(CROP) \
	--batch-size $(BATCH) --workers $(WORKERS) --checkpoint-every $(CHECKPOINT_EVERY) --seed $(SEED) \
	--val $(W)/val.jsonl $(TRAIN_FLAGS) --resume

# With GPUS >= 2, shard K of a per-image stage sees GPU K mod GPUS only: SHARDS=GPUS fills every GPU.
shard_env = $(if $(filter 0 1,$(GPUS)),,CUDA_VISIBLE_DEVICES=$$(( $(1) % $(GPUS) )))
shard_files = $(foreach k,$(SHARD_INDICES),$(1)/shards/$(2)-$(k)-of-$(SHARDS).jsonl)

# Per-kind options: SIMULATE_<kind>, PROMPTS_<kind> and TRAIN_<kind> add options for one kind
# (e.g. SIMULATE_points="--radius 2").
PROMPTS_points ?= --strategy skeleton
PROMPTS_scribbles ?= --strategy skeleton
PROMPTS_coarse ?= --strategy skeleton
PROMPTS_boxes ?= --strategy box
# A boxes file labels no pixel: the network learns from the SAM pseudo-labels (and its teacher) alone.
TRAIN_boxes ?= --lambda-weak 0

.PHONY: all help clean model val weak pseudo eval-pseudo train refine eval shard refine-shard print-work

help:
	@sed -n '/^#/!q; s/^# \{0,1\}//p' $(firstword $(MAKEFILE_LIST))

print-work:
	$(info $(abspath $(W)))

model: $(MODEL)

$(W)/model-fetched:
	@mkdir -p $(@D)
	$(SESAM) models fetch
	touch $@

# The records (id, image, gt[, gt_instances]) of split $(1) (TRAIN or VAL): the first link of its
# chains. An empty stream (DATA in another layout) stops the rule; sesam records' messages say why.
split_records = $(SESAM) records $($(1)_RECORDS) \
	| { grep . || { echo "sesam records made no $(1) records from DATA=$(DATA)" >&2; exit 1; }; }

$(W)/val.jsonl: $(VAL_PREREQUISITES)
	@mkdir -p $(@D)
	$(call split_records,VAL) > $@

val: $(W)/val.jsonl

# $(1) kind, $(2) round, $(3) the round before: refine the pseudo-labels with round $(3)'s network (in
# shards), then train again on them.
define round_rules
$(W)/$(1)/refined-$(2)/shards/refined-%-of-$(SHARDS).jsonl: $(W)/$(1)/train-$(3).jsonl | $(MODEL)
	@mkdir -p $$(@D)
	$$(call shard_env,$$*) $(SESAM) refine --shard $$*/$(SHARDS) --classes $(CLASSES) $(SAM_MODEL) \
		$(REFINE_FLAGS) -o $(W)/$(1)/refined-$(2) < $$< > $$@

$(W)/$(1)/refined-$(2).jsonl: $(call shard_files,$(W)/$(1)/refined-$(2),refined)
	cat $$^ > $$@

$(W)/$(1)/train-$(2).jsonl: $(W)/$(1)/refined-$(2).jsonl $(W)/val.jsonl
	$(TRAIN) $(TRAIN_OPTIONS) $(TRAIN_$(1)) --records $$< -o $(W)/$(1)/train-$(2) > $$@
endef

# $(1) kind: its weak labels, SAM pseudo-labels, training rounds and evaluations.
define kind_rules
$(W)/$(1)/weak.jsonl: $(TRAIN_PREREQUISITES)
	@mkdir -p $$(@D)
	$$(call split_records,TRAIN) \
	| $(SESAM) simulate --classes $(CLASSES) --seed $(SEED) --kind $(1) $(SIMULATE_$(1)) $(SIMULATE_FLAGS) \
		-o $(W)/$(1)/weak > $$@

$(W)/$(1)/shards/pseudo-%-of-$(SHARDS).jsonl: $(W)/$(1)/weak.jsonl | $(MODEL)
	@mkdir -p $$(@D)
	$(SESAM) decompose --shard $$*/$(SHARDS) --classes $(CLASSES) $(DECOMPOSE_FLAGS) -o $(W)/$(1)/components < $$< \
	| $(SESAM) sample-prompts $(PROMPTS_$(1)) --seed $(SEED) $(PROMPT_FLAGS) -o $(W)/$(1)/prompts \
	| $$(call shard_env,$$*) $(SESAM) sam-predict $(SAM_MODEL) $(SAM_FLAGS) -o $(W)/$(1)/masks \
	| $(SESAM) select --classes $(CLASSES) $(SELECT_FLAGS) -o $(W)/$(1)/pseudo \
		--confidence-dir $(W)/$(1)/confidence > $$@

$(W)/$(1)/pseudo.jsonl: $(call shard_files,$(W)/$(1),pseudo)
	cat $$^ > $$@

$(W)/$(1)/pseudo-eval.json: $(W)/$(1)/pseudo.jsonl
	$(SESAM) evaluate --key pseudo --classes $(CLASSES) --json $$@ < $$<

$(W)/$(1)/train-0.jsonl: $(W)/$(1)/pseudo.jsonl $(W)/val.jsonl
	$(TRAIN) $(TRAIN_OPTIONS) $(TRAIN_$(1)) --records $$< -o $(W)/$(1)/train-0 > $$@

$(W)/$(1)/predictions.jsonl: $(W)/$(1)/train-$(LAST_ROUND).jsonl $(W)/val.jsonl
	$(SESAM) refine --predict-only --checkpoint $(W)/$(1)/train-$(LAST_ROUND)/last.pt --classes $(CLASSES) \
		$(PREDICT_FLAGS) -o $(W)/$(1)/val-predictions < $(W)/val.jsonl > $$@

$(W)/$(1)/val-eval.json: $(W)/$(1)/predictions.jsonl
	$(SESAM) evaluate --key prediction --classes $(CLASSES) --json $$@ < $$<

.PHONY: weak-$(1) pseudo-$(1) eval-pseudo-$(1) train-$(1) refine-$(1) eval-$(1)
weak-$(1): $(W)/$(1)/weak.jsonl
pseudo-$(1): $(W)/$(1)/pseudo.jsonl
eval-pseudo-$(1): $(W)/$(1)/pseudo-eval.json
train-$(1): $(W)/$(1)/train-0.jsonl
refine-$(1): $(W)/$(1)/train-$(LAST_ROUND).jsonl
eval-$(1): $(W)/$(1)/val-eval.json
weak: weak-$(1)
pseudo: pseudo-$(1)
eval-pseudo: eval-pseudo-$(1)
train: train-$(1)
refine: refine-$(1)
eval: eval-$(1)
endef

$(foreach kind,$(KINDS),$(eval $(call kind_rules,$(kind))))
$(foreach kind,$(KINDS),$(foreach r,$(ROUND_NUMBERS),$(eval $(call round_rules,$(kind),$(r),$(word $(r),0 $(ROUND_NUMBERS))))))

all: eval-pseudo eval

shard: $(foreach kind,$(KINDS),$(W)/$(kind)/shards/pseudo-$(SHARD)-of-$(SHARDS).jsonl)

refine-shard: $(foreach kind,$(KINDS),$(W)/$(kind)/refined-$(ROUND)/shards/refined-$(SHARD)-of-$(SHARDS).jsonl)

clean:
	rm -rf $(W)
