import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from conftest import rocksalt
from matprobe.inputs.structures import (
    NON_FINITE,
    PARTIAL_OCCUPANCY,
    TOO_CLOSE,
    UNPARSABLE,
    ZERO_ATOMS,
    Crystal,
    RejectedStructure,
    check_crystal,
    crystal_from_arrays,
    crystal_from_pymatgen,
    parse_cif,
    parse_poscar,
    parse_structure_any,
    parse_structure_dict,
    row_to_structure,
)


def test_row_round_trip_is_lossless(crystals):
    for structure in crystals.values():
        crystal = crystal_from_pymatgen(structure)
        again = Crystal.from_row(crystal.to_row())
        np.testing.assert_array_equal(again.lattice, structure.lattice.matrix)
        np.testing.assert_array_equal(again.frac_coords, structure.frac_coords)
        rebuilt = row_to_structure(crystal.to_row())
        assert rebuilt == structure


def test_cif_poscar_and_dict_parse_to_the_same_crystal(crystals):
    structure = crystals["FeO"]
    from_cif = parse_cif(structure.to(fmt="cif"))
    from_poscar = parse_poscar(structure.to(fmt="poscar"))
    from_dict = parse_structure_dict(structure.as_dict())
    for crystal in (from_cif, from_poscar, from_dict):
        assert sorted(crystal.numbers.tolist()) == sorted([26] * 4 + [8] * 4)
        assert crystal.volume == pytest.approx(structure.volume, rel=1e-6)
    # text forms are recognised without being told which they are
    assert parse_structure_any(structure.to(fmt="cif")).nsites == 8
    assert parse_structure_any(structure.to(fmt="poscar")).nsites == 8
    assert parse_structure_any(str(structure.as_dict())).nsites == 8  # Python-literal text (matminer CSVs)


def test_partial_occupancy_is_rejected():
    disordered = Structure(Lattice.cubic(4.0), [{"Fe": 0.5, "Ni": 0.5}, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(RejectedStructure) as error:
        crystal_from_pymatgen(disordered)
    assert error.value.reason == PARTIAL_OCCUPANCY
    vacancy = Structure(Lattice.cubic(4.0), [{"Fe": 0.9}, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(RejectedStructure) as error:
        crystal_from_pymatgen(vacancy)
    assert error.value.reason == PARTIAL_OCCUPANCY


def test_checks_reject_empty_non_finite_and_too_close():
    lattice = np.eye(3) * 4.0
    with pytest.raises(RejectedStructure) as error:
        check_crystal(Crystal(lattice, np.zeros((0, 3)), np.zeros(0, dtype=int)), 0.5)
    assert error.value.reason == ZERO_ATOMS
    with pytest.raises(RejectedStructure) as error:
        check_crystal(Crystal(lattice, np.array([[0.0, np.nan, 0.0]]), np.array([26])), 0.5)
    assert error.value.reason == NON_FINITE
    close = Crystal(lattice, np.array([[0.0, 0.0, 0.0], [0.05, 0.0, 0.0]]), np.array([26, 8]))  # 0.2 A apart
    with pytest.raises(RejectedStructure) as error:
        check_crystal(close, 0.5)
    assert error.value.reason == TOO_CLOSE
    # closeness across the periodic boundary counts too
    across = Crystal(lattice, np.array([[0.01, 0.0, 0.0], [0.99, 0.0, 0.0]]), np.array([26, 8]))
    with pytest.raises(RejectedStructure):
        check_crystal(across, 0.5)


def test_check_wraps_coordinates_into_the_cell():
    crystal = check_crystal(Crystal(np.eye(3) * 4.0, np.array([[1.25, -0.25, 0.5]]), np.array([29])), 0.5)
    np.testing.assert_allclose(crystal.frac_coords, [[0.25, 0.75, 0.5]])


def test_garbage_is_unparsable_not_fatal():
    for text in ["data_broken\n_cell_length_a 3\n", "not a structure at all"]:
        with pytest.raises(RejectedStructure) as error:
            parse_structure_any(text)
        assert error.value.reason == UNPARSABLE


def test_arrays_in_cartesian_and_fractional_agree():
    structure = rocksalt()
    fractional = crystal_from_arrays(structure.lattice.matrix, structure.frac_coords, [s.specie.symbol for s in structure], False)
    cartesian = crystal_from_arrays(structure.lattice.matrix, structure.cart_coords, [s.specie.symbol for s in structure], True)
    np.testing.assert_allclose(fractional.frac_coords, cartesian.frac_coords, atol=1e-12)
