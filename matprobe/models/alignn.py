"""ALIGNN (Choudhary & DeCost, npj Comput. Mater. 7, 185 (2021)) behind the model seam, from the alignn package.

The network is the package's own pure-PyTorch model, `alignn.models.alignn_atomwise_pure.ALIGNNAtomWisePure`,
wrapped, not copied: `ALIGNN` builds it from an options dict with its force-field machinery switched off (no
gradients, stress, bond-length penalty or ZBL term: the target is one scalar per crystal) and feeds it graphs made
from the workflow's cached neighbour lists. ALIGNN's readout is a mean over atoms followed by one linear layer, so
the linear layer applied to each atom's last-layer features gives atom contributions whose mean is exactly the
prediction; no change to the model is needed.

Inputs (`AngleGraphs`): the atom graph is the workflow's k-nearest-neighbour list (`matprobe.prepare.graphs`), the
line graph joins bond A = (i -> j) to every bond B = (j -> k) leaving A's end atom j, with the cosine of the bond
angle at j. The package's directions are kept: a bond runs from the centre atom i that chose its neighbour j
(our `edge_index[1] -> edge_index[0]`, vector `edge_vec` = r_j - r_i), and the package's convolutions gather
messages at the bond's end, j. Only bonds no longer than `three_body_cutoff` take part in angles, as in the
package's pure-PyTorch graphs (its training default is 3.5 Å); the line graph of a whole dataset is computed in
one vectorised pass (`line_graphs`) and can be cached beside the graphs (`build_line_graphs`).

Defaults (`ALIGNNConfig`) are the package's pure-model defaults, ALIGNN's published ones scaled down for CPU:
2 ALIGNN + 2 edge-gated layers of width 64 (published: 4 + 4 of width 256), embedding width 64, 80 radial bins
on 0-8 Å and 40 angle bins on [-1, 1] (as published), CGCNN's 92 element features (as published); the cutoff (8 Å)
and 12 nearest neighbours (as published) are the workflow's graph settings. Also available: the package's attention
convolutions (`conv_type`, `num_heads`) and its smooth cutoff envelope (`use_cutoff_function` and its settings).

Input-space attribution (the seam's `inputs` capability: integrated gradients, TRIM) differentiates what the
package embeds: per atom its 92 CGCNN element features (`node_inputs`), per bond the radial basis of its length
(`edge_inputs`, the package's `RBFExpansion`); `forward_with_inputs` runs the package's forward pass with those in
place of its own, the line graph of bond angles read from the batch as always. The element features are jarvis'
CGCNN table: one-hot bins of the nine element properties matprobe's physical features bin, in other columns and
bins (`CGCNN_FEATURE_LAYOUT`), so TRIM reads ALIGNN in element-property space under the same property names, and
in distance bands (not where the cutoff envelope, not the length, feeds the radial basis).

A model trained by the package's own trainer (`train_alignn.py`, `model.name = alignn_atomwise_pure`) is probed
without training through `from_checkpoint` (a factory for `finished: true` config entries; docs/own-model.md): its
architecture and graph settings come from the config.json the trainer wrote, its weights from best_model.pt, and the
workflow's graph settings are checked against those it was trained on."""

from __future__ import annotations

import functools
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from matprobe import MatprobeError
from matprobe.inputs.features import MAX_Z
from matprobe.io import read_torch_dict, write_torch

with warnings.catch_warnings():
    # alignn's pydantic settings classes use class-based `Config` (deprecated in pydantic 2), and torch-geometric's
    # import calls torch.jit.script (deprecated in torch 2.13): both warn at import, which warnings-as-errors turns
    # into failures. Only these two, only while importing.
    warnings.filterwarnings("ignore", message=r"Support for class-based `config` is deprecated")
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=DeprecationWarning)
    from alignn.models.alignn_atomwise_pure import ALIGNNAtomWisePure, ALIGNNAtomWisePureConfig, cutoff_function_based_edges
    from alignn.torch_graph_builder import TorchGraph
    from torch_geometric.data import Batch, Data

LINE_GRAPH_FORMAT = 1
ALIGNN_FEATURE_WIDTH = 92  # CGCNN's one-hot element features, alignn's default `atom_features="cgcnn"`

# (property, columns) of the 92 CGCNN features (jarvis' atom_init.json, Z = 1-100), named as
# `matprobe.inputs.features.physical_feature_layout` names the same property; see `ALIGNN.node_input_layout`
CGCNN_FEATURE_LAYOUT: tuple[tuple[str, slice], ...] = (
    ("group", slice(0, 19)),  # column 0: La-Yb and Ac-Fm (the f block, Lu excepted); column g: group g
    ("period", slice(19, 26)),  # column 19 + p - 1: period p
    ("electronegativity", slice(26, 36)),  # 10 bins; none for He, Ne, Ar, Kr, Pm, Eu, Tb, Yb, Rn, Am-Fm
    ("covalent_radius", slice(36, 46)),  # 10 bins
    ("valence_electrons", slice(46, 58)),  # 1 to 12
    ("first_ionisation_energy", slice(58, 68)),  # 10 bins of its logarithm
    ("electron_affinity", slice(68, 78)),  # 10 bins; none for 26 elements (the noble gases but Xe, Mg, Mn, Zn, Cd, Hg, ...)
    ("block", slice(78, 82)),  # s, p, d, f (He in s)
    ("atomic_volume", slice(82, 92)),  # 10 bins of its logarithm; none for Pm, At, Rn, Fr, Pu, Bk-Fm
)


@functools.lru_cache(maxsize=1)
def element_feature_table() -> Tensor:
    """(MAX_Z + 1, 92): row Z holds the features alignn's graph builders give element Z (jarvis' CGCNN table,
    looked up the way they look it up); row 0 is unused."""
    from ase.data import chemical_symbols
    from jarvis.core.specie import get_node_attributes

    rows = np.zeros((MAX_Z + 1, ALIGNN_FEATURE_WIDTH), dtype=np.float32)
    for z in range(1, MAX_Z + 1):
        rows[z] = get_node_attributes(chemical_symbols[z], atom_features="cgcnn")
    return torch.from_numpy(rows)


# ---- the model -------------------------------------------------------------------------------------------------


def package_model_config(**fields) -> ALIGNNAtomWisePureConfig:
    """The package's model config; a value it refuses (pydantic's validation) is one line naming the field."""
    from pydantic import ValidationError

    try:
        return ALIGNNAtomWisePureConfig(name="alignn_atomwise_pure", **fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise MatprobeError(f"ALIGNN option {'.'.join(map(str, error['loc']))}: {error['msg']}") from None


@dataclass
class ALIGNNConfig:
    alignn_layers: int = 2  # ALIGNN layers: edge-gated convolution on the atom graph, then on the line graph
    gcn_layers: int = 2  # edge-gated convolutions on the atom graph alone, after them
    hidden: int = 64  # width of atom, bond and angle features
    embedding: int = 64  # width of the middle layer of the bond and angle embeddings
    edge_bins: int = 80  # Gaussian radial basis on 0-8 Å (fixed in the package)
    angle_bins: int = 40  # Gaussian basis on the bond-angle cosine, -1 to 1
    three_body_cutoff: float | None = 3.5  # Å; bonds longer than this join no angle (None: every bond of the graph)
    # the package's convolution: "alignn" (edge-gated, as published), "n_alignn" (node attention) or "t_alignn"
    # (self-attention; Shao et al., Adv. Theory Simul. 2026), with `num_heads` heads (hidden must be a multiple)
    conv_type: str = "alignn"
    num_heads: int = 1
    # the package's smooth cutoff envelope on bond lengths (off, as published): the envelope, from `inner_cutoff`
    # Å with `cutoff_exponent`, replaces the length fed to the radial basis, or with `multiply_cutoff` scales its
    # embedding
    use_cutoff_function: bool = False
    multiply_cutoff: bool = False
    inner_cutoff: float = 3.0
    cutoff_exponent: int = 5


class ALIGNN(nn.Module):
    """The seam's crystal model around the package's `ALIGNNAtomWisePure` (attribute `net`, so its state-dict keys
    are the package's with a `net.` prefix). `forward(batch)` takes a batch of its `graph_kind`'s items."""

    # the package's message passing sums with an in-place scatter_add_ into a fresh tensor, which torch.func's vmap
    # over parameter sets cannot batch: landscapes evaluate it one point per pass (landscape.points_per_pass_for)
    supports_vmap = False

    def __init__(self, config: ALIGNNConfig):
        super().__init__()
        self.config = config
        if config.conv_type != "alignn" and config.hidden % config.num_heads:
            raise MatprobeError(f"model option num_heads: {config.num_heads} heads do not divide hidden {config.hidden}")
        package_config = package_model_config(
            alignn_layers=config.alignn_layers,
            gcn_layers=config.gcn_layers,
            atom_input_features=ALIGNN_FEATURE_WIDTH,
            edge_input_features=config.edge_bins,
            triplet_input_features=config.angle_bins,
            embedding_features=config.embedding,
            hidden_features=config.hidden,
            output_features=1,
            conv_type=config.conv_type,
            num_heads=config.num_heads,
            use_cutoff_function=config.use_cutoff_function,
            multiply_cutoff=config.multiply_cutoff,
            inner_cutoff=config.inner_cutoff,
            exponent=config.cutoff_exponent,
            # a scalar property, not a force field: no forces (gradwise_weight=0 also tells the package's
            # trainer so), no stress, no short-bond penalty or ZBL repulsion added to the output, and the output
            # is the per-atom mean, not multiplied by the number of atoms
            calculate_gradient=False,
            gradwise_weight=0.0,
            stresswise_weight=0.0,
            use_penalty=False,
            use_zbl=False,
            energy_mult_natoms=False,
            # angle cosines come with the graphs (cached once per dataset) instead of being recomputed per pass
            lg_on_fly=False,
            # read only by the package's tensor-only entry point, which builds its own line graph; ours come built
            **({} if config.three_body_cutoff is None else {"three_body_cutoff": config.three_body_cutoff}),
        )
        self.net = ALIGNNAtomWisePure(package_config)
        # the package's own Z -> features buffer (meant for its tensor-only entry point): filled once here, it
        # travels with the state dict
        self.net._species_table.zero_()
        self.net._species_table[: MAX_Z + 1] = element_feature_table()
        # the last layer's atom features, what the linear head reads: kept by a hook, so that the prediction is
        # the package's own forward pass, unchanged
        last = (self.net.gcn_layers[-1] if len(self.net.gcn_layers) else
                self.net.alignn_layers[-1] if len(self.net.alignn_layers) else self.net.atom_embedding)
        last.register_forward_hook(self._keep_atoms)
        self._atoms: Tensor | None = None
        # edge inputs given to forward_with_inputs take the place of the package's radial basis by a hook on it, so
        # that everything after the basis is still the package's own forward pass
        self.net.edge_embedding[0].register_forward_hook(self._substitute_edge_inputs)
        self._edge_inputs: Tensor | None = None
        # what the seam reads to make this model's inputs; a checkpoint's also checks the workflow's graph settings
        # against those it was trained on
        trained_on = ({"cutoff": config.cutoff, "max_neighbors": config.max_neighbors}
                      if isinstance(config, CheckpointConfig) else None)
        self.graph_kind = AngleGraphs(config.three_body_cutoff, trained_on=trained_on,
                                      source=f"model option checkpoint ({config.checkpoint})" if trained_on else "")

    def _keep_atoms(self, module, inputs, output) -> None:
        self._atoms = output[0] if isinstance(output, tuple) else output

    def _substitute_edge_inputs(self, module, inputs, output) -> Tensor | None:
        return self._edge_inputs  # None keeps the package's own expansion

    def options(self) -> dict:
        """The options that rebuild this model (`build(options)`)."""
        return asdict(self.config)

    def element_representation(self) -> Tensor:
        """(MAX_Z + 1, hidden): the vector each element starts from (the atom embedding of its features)."""
        return self.net.atom_embedding(self.net._species_table[: MAX_Z + 1])

    def head(self, atoms: Tensor) -> Tensor:
        """Atom contributions from atom features: the package's final linear layer, atom by atom."""
        return self.net.fc(atoms).squeeze(-1)

    def node_inputs(self, z: Tensor) -> Tensor:
        """(atoms, 92): the CGCNN element features the package's atom embedding reads."""
        return self.net._species_table[z]

    def edge_inputs(self, edge_dist: Tensor) -> Tensor:
        """(bonds, edge_bins): the radial basis the package expands each bond into, of its length, or of the cutoff
        envelope of its length where the envelope feeds the basis (`use_cutoff_function` without
        `multiply_cutoff`)."""
        config = self.net.config
        if config.use_cutoff_function and not config.multiply_cutoff:
            edge_dist = cutoff_function_based_edges(edge_dist, inner_cutoff=config.inner_cutoff, exponent=config.exponent)
        return self.net.edge_embedding[0](edge_dist)

    def node_input_layout(self) -> list[tuple[str, slice]]:
        """(property, columns) of the 92 CGCNN features (`CGCNN_FEATURE_LAYOUT`), for TRIM's element-property space.

        The blocks are read off the table itself (jarvis' atom_init.json, CGCNN's, Z = 1-100), not taken from the
        CGCNN paper. Every feature is 0 or 1, and the columns split into no fewer than nine contiguous runs in which
        no element has two 1s; of all such splits, the only freedom is the boundary between the sixth and seventh
        run (66, 67 or 68). At 68 the logarithms of the first ionisation energies of all 100 elements fall in ten
        equal bins (0.197 wide in ln eV) without exception, He and Ne (the highest two) in the top two, columns 66
        and 67; and every noble gas but Xe then has no electron affinity. Each block's active bin was matched to
        pymatgen's values: period exactly; group exactly, column 0 holding pymatgen's f block (La-Yb, Ac-Fm);
        block exactly but for He (s here, p in pymatgen); valence electrons as matprobe counts them (the group,
        less 10 in the p block) but for He (2), the f block (2) and Pd (12); the binned ones by rank, each block
        agreeing best with its own property (Spearman ρ of bin and the value matprobe's features bin: electronegativity 0.96,
        covalent radius 0.94, first ionisation energy 0.97 with no discordant pair, electron affinity 0.85, molar
        volume 0.96). Electronegativity, electron affinity and atomic volume are all zero for the elements the
        table has no value of; every other block has exactly one 1 per element. The names are those of
        `physical_feature_layout`, so the two kinds of model's TRIM bars line up; the columns and bins are
        CGCNN's (group has 19 columns, the f block's and groups 1-18; the physical features put the f block in
        group 3)."""
        return list(CGCNN_FEATURE_LAYOUT)

    def edge_input_centres(self) -> Tensor | None:
        """The bond length (Å) each edge-input column is centred on; None where the basis expands the cutoff
        envelope instead, whose columns are no distances."""
        config = self.net.config
        return None if config.use_cutoff_function and not config.multiply_cutoff else self.net.edge_embedding[0].centers

    def package_inputs(self, batch, atom_features: Tensor | None = None) -> tuple[TorchGraph, TorchGraph, None]:
        """The (graph, line graph, lattice) triple the package's forward takes, from a batch of our items (with
        `atom_features` in place of the elements' own)."""
        num_graphs = int(batch.num_graphs)
        counts = torch.bincount(batch.batch, minlength=num_graphs)
        atom_graph = TorchGraph(
            num_nodes=int(batch.z.shape[0]),
            src=batch.edge_index[1],  # the centre atom i that chose the bond
            dst=batch.edge_index[0],  # its neighbour j, where the package gathers
            ndata={"atom_features": self.node_inputs(batch.z) if atom_features is None else atom_features},
            edata={"r": batch.edge_vec},
            batch_num_nodes=counts,
        )
        line_graph = TorchGraph(num_nodes=int(batch.edge_index.shape[1]), src=batch.lg_index[0], dst=batch.lg_index[1],
                                edata={"h": batch.lg_cos})
        return atom_graph, line_graph, None  # the lattice is read only for stress, which is off

    def forward(self, batch, edge_inputs: Tensor | None = None, neighbors: int | None = None) -> dict[str, Tensor]:
        """`edge_inputs` may be passed precomputed (`edge_inputs(batch.edge_dist)`): the radial basis has no
        parameters, so callers that evaluate one batch many times (loss landscapes) expand once; by default the
        package expands the bonds itself. `neighbors`, the crystal graphs' convolution fast path, is not ALIGNN's."""
        return self.forward_with_inputs(batch, self.node_inputs(batch.z), edge_inputs)

    def forward_with_inputs(self, batch, node_inputs: Tensor, edge_inputs: Tensor | None) -> dict[str, Tensor]:
        """The outputs on `batch` with these node inputs (atoms, 92) and edge inputs (bonds, edge_bins; None: the
        package's own expansion of the bonds), the line graph the batch's: what attribution differentiates."""
        self._atoms, self._edge_inputs = None, edge_inputs
        try:
            prediction = self.net(self.package_inputs(batch, node_inputs))["out"]
        finally:
            self._edge_inputs = None
        atoms, self._atoms = self._atoms, None
        contributions = self.head(atoms)
        num_graphs = int(batch.num_graphs)
        zeros = torch.zeros(num_graphs, dtype=atoms.dtype, device=atoms.device)
        counts = zeros.index_add(0, batch.batch, torch.ones_like(contributions))
        latent = torch.zeros(num_graphs, atoms.shape[1], dtype=atoms.dtype, device=atoms.device).index_add(
            0, batch.batch, atoms) / counts[:, None]
        return {"prediction": prediction, "contributions": contributions, "atoms": atoms, "latent": latent}


def build(options: dict) -> ALIGNN:
    """An ALIGNN from its options (unknown options are an error, so typos cannot pass silently)."""
    known = set(ALIGNNConfig.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise MatprobeError(f"model options {unknown}: not options of ALIGNN; choose from {sorted(known)}")
    return ALIGNN(ALIGNNConfig(**options))


# ---- a checkpoint written by the alignn package's own trainer ------------------------------------------------


@dataclass
class CheckpointConfig(ALIGNNConfig):
    """An ALIGNN trained by the alignn package: its architecture (the fields of ALIGNNConfig, read from its
    config.json), the graphs it was trained on, and where its weights came from (provenance; never read again)."""

    checkpoint: str = ""  # best_model.pt, as the config named it
    config: str = ""  # its config.json
    checkpoint_sha256: str = ""
    cutoff: float = 8.0  # Å, the atom graph's cutoff it was trained with
    max_neighbors: int | None = 12  # the nearest neighbours kept per atom


def from_checkpoint(options: dict) -> ALIGNN:
    """The factory of a finished ALIGNN (`factory: matprobe.models.alignn:from_checkpoint`, `finished: true`): a
    model trained by the alignn package's own entry point (`train_alignn.py`, `alignn.train.train_dgl`) with
    `model.name = alignn_atomwise_pure`, behind the seam with its weights.

    Options, as a config names them: `checkpoint`, the state dict its trainer saved (best_model.pt), and `config`,
    the config.json its trainer wrote beside it (default: that file). The architecture, the graph settings (cutoff,
    max_neighbors, three_body_cutoff) and what its output means are read from config.json; the weights must fit
    that architecture exactly. A checkpoint that is missing, not a state dict, or does not fit its config is one line
    naming the option `checkpoint`; a config.json that is missing, not alignn's, or describes a model whose output is
    not one scalar property per crystal (a classifier, several outputs, a log or logit link, a target multiplication
    factor, atom features other than CGCNN's, graphs other than its pure-torch k-nearest ones, a force field whose
    output adds ZBL repulsion) is one line naming the option `config`.

    What model.pt records (`ALIGNN.options()`): the architecture, the graph settings and the provenance
    (`CheckpointConfig`), not a path to read again. The seam rebuilds the module from those options and loads
    model.pt's weights into it (`load_trained`), so probe jobs need neither the checkpoint nor alignn's config.json:
    they may run elsewhere (a cluster node, another checkout) or after the file was moved or overwritten, and no file
    outside the workflow, which Snakemake does not track, decides what a probe computes. Options that carry `checkpoint_sha256`
    are such a record and are rebuilt without reading any file (the weights are then the caller's to load).

    Outputs are in the checkpoint's own units, trained on whatever target its dataset held: train it on the
    workflow's target (docs/examples/alignn_demo does so for formation energy per atom)."""
    from matprobe.inputs.download import sha256_of

    options = dict(options)
    if "checkpoint_sha256" in options:  # a record written by the workflow: rebuild, read nothing
        known = set(CheckpointConfig.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise MatprobeError(f"model options {unknown}: not options of a recorded ALIGNN checkpoint; choose from {sorted(known)}")
        return ALIGNN(CheckpointConfig(**options))
    unknown = sorted(set(options) - {"checkpoint", "config"})
    if unknown:
        raise MatprobeError(f"model options {unknown}: from_checkpoint takes `checkpoint` (the best_model.pt alignn's "
                            "trainer wrote) and `config` (its config.json; default: the one beside the checkpoint)")
    if not options.get("checkpoint"):
        raise MatprobeError("model option checkpoint: missing; name the best_model.pt that alignn's trainer wrote")
    checkpoint = Path(str(options["checkpoint"]))
    config_path = Path(str(options.get("config") or checkpoint.with_name("config.json")))
    training = read_training_config(config_path)
    weights = read_state_dict(checkpoint)
    config = CheckpointConfig(**architecture_of(training, config_path), checkpoint=str(options["checkpoint"]),
                              config=str(config_path), checkpoint_sha256=sha256_of(checkpoint))
    module = ALIGNN(config)
    # The package's species table is a buffer its training path never reads (its graphs carry the features); ours
    # holds the same CGCNN features by element and is what our inputs read, so it is kept. Heads the scalar output
    # does not read (atom-wise or additional outputs) are left out, so that no landscape direction moves them.
    weights = {key: value for key, value in weights.items()
               if key != "_species_table" and not key.startswith(("fc_atomwise.", "fc_additional_output."))}
    expected = {key: value for key, value in module.net.state_dict().items() if key != "_species_table"}
    problem = state_dict_mismatch(weights, expected)
    if problem:
        raise MatprobeError(f"model option checkpoint: {checkpoint}: does not fit the ALIGNN its config {config_path} "
                            f"describes ({problem})")
    module.net.load_state_dict(weights, strict=False)  # every key but the species table, checked just above
    return module.eval()


def read_training_config(path: Path) -> dict:
    """The TrainingConfig alignn's trainer wrote (config.json), as a dict; one line naming the option if unreadable."""
    import json

    try:
        training = json.loads(path.read_text())
    except FileNotFoundError:
        raise MatprobeError(f"model option config: {path}: not found (alignn's trainer writes config.json beside "
                            "best_model.pt; name it with `config` if it lies elsewhere)") from None
    except (OSError, ValueError) as exc:
        raise MatprobeError(f"model option config: {path}: not readable JSON ({type(exc).__name__})") from None
    if not isinstance(training, dict) or not isinstance(training.get("model"), dict):
        raise MatprobeError(f"model option config: {path}: not the config.json of alignn's trainer (no `model` section)")
    return training


def architecture_of(training: dict, path: Path) -> dict:
    """The ALIGNNConfig fields and graph settings of a model alignn's trainer trained, from its config.json; a model
    whose output is not one scalar per crystal, or whose inputs the workflow cannot make, is refused in one line."""
    model = training["model"]
    where = f"model option config: {path}"
    if model.get("name") != "alignn_atomwise_pure":
        raise MatprobeError(f"{where}: model.name is {model.get('name')!r}; from_checkpoint loads alignn_atomwise_pure "
                            "models (the package's pure-PyTorch ALIGNN)")
    refusals = [
        (training.get("atom_features", "cgcnn") != "cgcnn", f"atom_features {training.get('atom_features')!r}, not 'cgcnn'"),
        (training.get("neighbor_strategy") != "pure_torch",
         f"neighbor_strategy {training.get('neighbor_strategy')!r}, not 'pure_torch' (the k nearest neighbours within the "
         "cutoff, the workflow's graphs)"),
        (model.get("atom_input_features", ALIGNN_FEATURE_WIDTH) != ALIGNN_FEATURE_WIDTH,
         f"model.atom_input_features {model.get('atom_input_features')}, not the {ALIGNN_FEATURE_WIDTH} CGCNN features"),
        (training.get("classification_threshold") is not None or model.get("classification", False), "a classifier"),
        (model.get("output_features", 1) != 1, f"{model.get('output_features')} outputs, not one"),
        (model.get("link", "identity") != "identity", f"model.link {model.get('link')!r}: its output is not the mean of "
                                                       "atom contributions"),
        (training.get("target_multiplication_factor") not in (None, 1, 1.0),
         f"target_multiplication_factor {training.get('target_multiplication_factor')}: its outputs are scaled targets"),
    ]
    # the package adds ZBL repulsion to the output of a force field (gradients on, and use_zbl on or left unset)
    gradients = bool(model.get("calculate_gradient", True)) and model.get("gradwise_weight", 1.0) != 0
    zbl = model.get("use_zbl")
    refusals.append((gradients and (gradients if zbl is None else bool(zbl)),
                     "a force field whose output adds ZBL repulsion (set gradwise_weight 0 or use_zbl false)"))
    for refused, why in refusals:
        if refused:
            raise MatprobeError(f"{where}: {why}; from_checkpoint loads models of one scalar property per crystal")
    defaults = ALIGNNConfig()
    return {
        "alignn_layers": int(model.get("alignn_layers", defaults.alignn_layers)),
        "gcn_layers": int(model.get("gcn_layers", defaults.gcn_layers)),
        "hidden": int(model.get("hidden_features", defaults.hidden)),
        "embedding": int(model.get("embedding_features", defaults.embedding)),
        "edge_bins": int(model.get("edge_input_features", defaults.edge_bins)),
        "angle_bins": int(model.get("triplet_input_features", defaults.angle_bins)),
        # its graph builder's: the trainer's three_body_cutoff, every bond when unset (alignn.graphs)
        "three_body_cutoff": None if training.get("three_body_cutoff") is None else float(training["three_body_cutoff"]),
        "conv_type": str(model.get("conv_type", defaults.conv_type)),
        "num_heads": int(model.get("num_heads", defaults.num_heads)),
        "use_cutoff_function": bool(model.get("use_cutoff_function", defaults.use_cutoff_function)),
        "multiply_cutoff": bool(model.get("multiply_cutoff", defaults.multiply_cutoff)),
        "inner_cutoff": float(model.get("inner_cutoff", defaults.inner_cutoff)),
        "cutoff_exponent": int(model.get("exponent", defaults.cutoff_exponent)),
        "cutoff": float(training.get("cutoff", 8.0)),
        "max_neighbors": None if training.get("max_neighbors") is None else int(training["max_neighbors"]),
    }


def read_state_dict(path: Path) -> dict:
    """A state dict saved with torch.save (weights_only: no code runs on load); one line naming the option if not."""
    if not path.is_file():
        raise MatprobeError(f"model option checkpoint: {path}: not found")
    try:
        weights = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # truncated, pickled code, another format: torch raises many kinds
        raise MatprobeError(f"model option checkpoint: {path}: not a readable state dict ({type(exc).__name__})") from None
    if not isinstance(weights, dict) or not weights or not all(isinstance(v, Tensor) for v in weights.values()):
        raise MatprobeError(f"model option checkpoint: {path}: not a state dict of tensors (alignn's trainer saves "
                            "`model.state_dict()` as best_model.pt)")
    return weights


def state_dict_mismatch(found: dict, expected: dict) -> str:
    """The first difference between two state dicts' keys and shapes, in words; empty if they fit."""
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing:
        return f"{len(missing)} weights missing, e.g. {missing[0]}"
    if unexpected:
        return f"{len(unexpected)} weights the architecture lacks, e.g. {unexpected[0]}"
    for key, value in expected.items():
        if tuple(found[key].shape) != tuple(value.shape):
            return f"{key} is {tuple(found[key].shape)}, the architecture's is {tuple(value.shape)}"
    return ""


# ---- line graphs --------------------------------------------------------------------------------------------


def line_graphs(stored: dict, three_body_cutoff: float | None) -> dict:
    """The line graphs of every crystal of a stored graph set (`matprobe.prepare.graphs.load_graphs`), in one
    vectorised pass: for each bond A = (i -> j) no longer than `three_body_cutoff` (None: every bond), one
    line-graph edge to every such bond B = (j -> k), with the angle cosine at j, cos = -r_A . r_B / (|r_A| |r_B|)
    (alignn's convention: B may lead back to i, an angle of 0). Returns a dict of tensors: `lg_ptr` (per-crystal
    offsets), `lg_index` (2, T) int32 bond indices local to each crystal (row 0: A, row 1: B), `lg_cos` (T,)
    float32, and the settings and ids it belongs to."""
    edge_ptr = stored["edge_ptr"].numpy().astype(np.int64)
    node_ptr = stored["node_ptr"].numpy().astype(np.int64)
    edge_crystal = np.repeat(np.arange(len(edge_ptr) - 1), np.diff(edge_ptr))
    node_offset = node_ptr[edge_crystal]
    edge_index = stored["edge_index"].numpy().astype(np.int64)
    centre = edge_index[1] + node_offset
    neighbour = edge_index[0] + node_offset
    if centre.size and (np.diff(centre) < 0).any():
        raise MatprobeError("graph set: bonds are not grouped by centre atom (not a matprobe graph file?)")
    vectors = stored["edge_vec"].numpy().astype(np.float64)
    lengths = np.linalg.norm(vectors, axis=1)
    allowed = np.flatnonzero(lengths <= three_body_cutoff) if three_body_cutoff is not None else np.arange(centre.size)
    # the allowed bonds leaving each atom are one contiguous run of `allowed` (bonds are grouped by centre)
    atoms = np.arange(int(node_ptr[-1]))
    first = np.searchsorted(centre[allowed], atoms, side="left")
    last = np.searchsorted(centre[allowed], atoms, side="right")
    starts, counts = first[neighbour[allowed]], (last - first)[neighbour[allowed]]
    total = int(counts.sum())
    bond_a = np.repeat(allowed, counts)
    run_start = np.cumsum(counts) - counts
    bond_b = allowed[np.repeat(starts - run_start, counts) + np.arange(total)]
    cosines = -np.einsum("ij,ij->i", vectors[bond_a], vectors[bond_b]) / np.maximum(lengths[bond_a] * lengths[bond_b], 1e-12)
    np.clip(cosines, -1.0, 1.0, out=cosines)
    triplet_crystal = edge_crystal[bond_a]
    lg_counts = np.bincount(triplet_crystal, minlength=len(edge_ptr) - 1)
    local = np.stack([bond_a, bond_b]) - edge_ptr[triplet_crystal][None, :]
    return {
        "format": LINE_GRAPH_FORMAT,
        "settings": {"three_body_cutoff": None if three_body_cutoff is None else float(three_body_cutoff),
                     "graphs": dict(stored["settings"])},
        "ids": list(stored["ids"]),
        "edges": int(edge_ptr[-1]),
        "lg_ptr": torch.from_numpy(np.concatenate([[0], np.cumsum(lg_counts)])),
        "lg_index": torch.from_numpy(local.astype(np.int32)),
        "lg_cos": torch.from_numpy(cosines.astype(np.float32)),
    }


def build_line_graphs(graphs_path: str | Path, out_path: str | Path, three_body_cutoff: float | None) -> dict:
    """The cache stage: the line graphs of a stored graph set, written to `out_path` (loads weights_only)."""
    from matprobe.prepare.graphs import load_graphs

    started = time.perf_counter()
    lines = line_graphs(load_graphs(graphs_path), three_body_cutoff)
    write_torch(lines, out_path)
    return {"graphs": str(graphs_path), "three_body_cutoff": three_body_cutoff, "crystals": len(lines["ids"]),
            "angles": int(lines["lg_cos"].numel()), "seconds": round(time.perf_counter() - started, 2)}


def load_line_graphs(path: str | Path) -> dict:
    """A cached line-graph set (weights_only: no code runs on load)."""
    return read_torch_dict(path, "line-graph", LINE_GRAPH_FORMAT, "run its build_line_graphs job first")


# ---- the graph kind -----------------------------------------------------------------------------------------


class AngleGraph(Data):
    """One crystal: z, edge_index (row 0 neighbour j, row 1 centre i, as every matprobe graph), edge_vec (r_j - r_i),
    edge_dist (|edge_vec|), lg_index (bond pairs, local bond indices), lg_cos, y, item. Batching offsets lg_index by the
    number of bonds of the crystals before it."""

    def __inc__(self, key, value, *args, **kwargs):
        if key == "lg_index":
            return self.edge_index.shape[1]
        return super().__inc__(key, value, *args, **kwargs)


class AngleGraphs:
    """ALIGNN's graph kind: atom graphs from the workflow's cached neighbour lists, with their line graphs.

    `cache`: the line graphs of the whole stored set (`load_line_graphs`); without it the line graphs of the crystals
    asked for are computed from their neighbour lists when their items are made (same numbers either way).
    `trained_on`: the graph settings (cutoff, max_neighbors) a finished model was trained on; graphs made with other
    settings are refused in one line that begins with `source`."""

    name = "angle"

    def __init__(self, three_body_cutoff: float | None = 3.5, cache: dict | None = None, trained_on: dict | None = None,
                 source: str = ""):
        self.three_body_cutoff = None if three_body_cutoff is None else float(three_body_cutoff)
        self.cache = cache
        self.trained_on = trained_on
        self.source = source

    def _check_settings(self, settings: dict) -> None:
        if self.trained_on is None:
            return
        wanted = (float(self.trained_on["cutoff"]), self.trained_on["max_neighbors"])
        given = (float(settings["cutoff"]), settings.get("max_neighbors"))
        if given != wanted:
            raise MatprobeError(f"{self.source}: trained on graphs of cutoff {wanted[0]} Å and max_neighbors {wanted[1]}, "
                                f"the workflow's have {given[0]} Å and {given[1]}; set graph: {{cutoff: {wanted[0]}, "
                                f"max_neighbors: {'null' if wanted[1] is None else wanted[1]}}} to probe it")

    def _checked_cache(self, stored: dict) -> dict:
        lines = self.cache
        if lines["settings"]["three_body_cutoff"] != self.three_body_cutoff:
            raise MatprobeError(f"line-graph cache: made with three_body_cutoff {lines['settings']['three_body_cutoff']}, "
                                f"the model needs {self.three_body_cutoff}; rebuild it")
        if lines["ids"] != list(stored["ids"]) or lines["edges"] != int(stored["edge_ptr"][-1]):
            raise MatprobeError("line-graph cache: made from another graph set than the one loaded; rebuild it")
        return lines

    def from_stored(self, stored: dict, ids: list[str], targets: np.ndarray) -> list[AngleGraph]:
        self._check_settings(stored["settings"])
        position = {crystal_id: k for k, crystal_id in enumerate(stored["ids"])}
        rows = [position[crystal_id] for crystal_id in ids]
        if self.cache is not None:
            lines, line_rows = self._checked_cache(stored), rows
        else:  # only the crystals asked for, in one pass
            lines, line_rows = line_graphs(select_crystals(stored, rows), self.three_body_cutoff), range(len(rows))
        node_ptr, edge_ptr, lg_ptr = stored["node_ptr"], stored["edge_ptr"], lines["lg_ptr"]
        items = []
        for k, (g, line_row) in enumerate(zip(rows, line_rows)):
            n0, n1, e0, e1 = int(node_ptr[g]), int(node_ptr[g + 1]), int(edge_ptr[g]), int(edge_ptr[g + 1])
            t0, t1 = int(lg_ptr[line_row]), int(lg_ptr[line_row + 1])
            edge_vec = stored["edge_vec"][e0:e1]
            items.append(AngleGraph(
                z=stored["numbers"][n0:n1].long(),
                edge_index=stored["edge_index"][:, e0:e1].long(),
                edge_vec=edge_vec,
                # the length as the package computes it from edge_vec (the stored one is rounded from float64 and
                # differs in the last bit), so that edge inputs made from edge_dist are the package's own
                edge_dist=torch.norm(edge_vec, dim=1),
                lg_index=lines["lg_index"][:, t0:t1].long(),
                lg_cos=lines["lg_cos"][t0:t1].clone(),  # not a view: an item must not keep a whole set's angles alive
                y=torch.tensor([float(targets[k])], dtype=torch.float32),
                item=torch.tensor([k]),
                num_nodes=n1 - n0,
            ))
        return items

    def from_crystals(self, crystals: list, graph_settings: dict) -> list[AngleGraph]:
        """Items for crystals made or edited on the fly, built as the graph and line-graph stages build them
        (targets unknown: zero, as the workflow's other graph kinds give them)."""
        from matprobe.prepare.graphs import build_graph, collate_graphs

        cutoff, k = float(graph_settings["cutoff"]), graph_settings.get("max_neighbors")
        self._check_settings({"cutoff": cutoff, "max_neighbors": k})
        ids = [str(n) for n in range(len(crystals))]
        stored = collate_graphs(ids, [build_graph(crystal, cutoff, k) for crystal in crystals],
                                {"cutoff": cutoff, "max_neighbors": k})
        return AngleGraphs(self.three_body_cutoff).from_stored(stored, ids, np.zeros(len(crystals)))

    @staticmethod
    def collate(items: list[AngleGraph]) -> Batch:
        batch = Batch.from_data_list(items)
        batch.neighbors = 0  # no convolution fast path (seam.CrystalGraphs); landscapes pass it along
        return batch


def select_crystals(stored: dict, rows: list[int]) -> dict:
    """The neighbour lists of some crystals of a stored set (by position, in the order given), as a stored set of
    its own: what `line_graphs` reads."""
    rows = np.asarray(rows, dtype=np.int64)
    node_ptr, edge_ptr = stored["node_ptr"].numpy(), stored["edge_ptr"].numpy()
    node_counts, edge_counts = node_ptr[rows + 1] - node_ptr[rows], edge_ptr[rows + 1] - edge_ptr[rows]
    run_start = np.cumsum(edge_counts) - edge_counts
    edges = torch.from_numpy(np.repeat(edge_ptr[rows] - run_start, edge_counts) + np.arange(int(edge_counts.sum())))
    return {
        "settings": dict(stored["settings"]),
        "ids": [stored["ids"][g] for g in rows],
        "node_ptr": torch.from_numpy(np.concatenate([[0], np.cumsum(node_counts)])),
        "edge_ptr": torch.from_numpy(np.concatenate([[0], np.cumsum(edge_counts)])),
        "edge_index": stored["edge_index"][:, edges],
        "edge_vec": stored["edge_vec"][edges],
    }


# ---- comparison with the package's own graphs ---------------------------------------------------------------


def jarvis_atoms(crystal):
    """The jarvis `Atoms` of a `matprobe.inputs.structures.Crystal` (what alignn's own graph builders take)."""
    from ase.data import chemical_symbols
    from jarvis.core.atoms import Atoms

    return Atoms(lattice_mat=np.asarray(crystal.lattice), coords=np.asarray(crystal.frac_coords),
                 elements=[chemical_symbols[int(z)] for z in crystal.numbers], cartesian=False)


def package_model(checkpoint: str | Path, config_path: str | Path) -> tuple[ALIGNNAtomWisePure, dict]:
    """alignn's own model of a checkpoint, rebuilt as its trainer's restart path rebuilds one (the model class from
    config.json's model section, the checkpoint's state dict as it is), in eval mode, with the training config."""
    training = read_training_config(Path(config_path))
    net = ALIGNNAtomWisePure(ALIGNNAtomWisePureConfig(**training["model"]))
    net.load_state_dict(torch.load(checkpoint, weights_only=True, map_location="cpu"))
    return net.eval(), training


def package_graph_pair(crystal, training: dict):
    """The (graph, line graph) alignn's trainer builds for a crystal with its config.json's settings (the path
    `alignn.graphs.Graph.atom_dgl_multigraph` takes for neighbor_strategy pure_torch)."""
    from alignn.torch_graph_builder import build_pure_torch_graph

    cutoff = float(training["cutoff"])
    three_body = training.get("three_body_cutoff")
    return build_pure_torch_graph(jarvis_atoms(crystal), two_body_cutoff=cutoff,
                                  three_body_cutoff=cutoff if three_body is None else float(three_body),
                                  max_neighbors=training.get("max_neighbors"), atom_features="cgcnn")


def stored_from_package_graph(graph, crystal, settings: dict) -> dict:
    """A one-crystal stored graph set (`matprobe.prepare.graphs` layout) holding exactly the bonds alignn's builder
    chose (its src is the centre atom, our edge_index row 1): for items on the package's own neighbour lists, where
    its tie-breaking among equidistant 12th neighbours differs from the workflow's."""
    vectors = graph.edata["r"].detach().numpy().astype(np.float32)
    return {
        "settings": dict(settings), "ids": ["x"],
        "node_ptr": torch.tensor([0, crystal.nsites]), "edge_ptr": torch.tensor([0, graph.num_edges]),
        "numbers": torch.from_numpy(crystal.numbers.astype(np.int16)),
        "pos": torch.from_numpy(crystal.cart_coords().astype(np.float32)),
        "lattice": torch.from_numpy(np.asarray(crystal.lattice, dtype=np.float32))[None],
        "edge_index": torch.stack([graph.dst, graph.src]).to(torch.int32),
        "edge_shift": graph.edata["images"].to(torch.int8),
        "edge_dist": torch.from_numpy(np.linalg.norm(vectors, axis=1)), "edge_vec": torch.from_numpy(vectors),
    }
