"""ament_python package; `pip install -e .` works too (ROS wheels come from requirements-ros.txt)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "depth_ft_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "numpy",
        "scipy",
        "opencv-python-headless",
        "scikit-image",
        "torch",
        "diffusers>=0.28",
        "transformers",
        "huggingface_hub",
        "accelerate",  # low-memory loading of the real ~866M-parameter UNet
        "safetensors",
        "rosbags>=0.10",
        "pyyaml",
    ],
    extras_require={"test": ["pytest", "ruff", "mypy", "types-PyYAML", "mcap", "mcap-ros2-support",
                                "colcon-common-extensions",
                                "moto[server]"],  # an S3 API on 127.0.0.1 for the fleet tests
                    # ONNX export and the ONNX Runtime path (CPU build; onnxruntime-gpu / JetPack's on GPUs)
                    "onnx": ["onnx", "onnxruntime"],
                    # `depth-ft-ros fleet`: bags over a Ray actor pool; Parquet and s3:// through pyarrow; the
                    # summary and compare plots (matplotlib)
                    "fleet": ["ray[data]", "pyarrow", "matplotlib"]},
    zip_safe=True,
    maintainer="depth_ft_ros maintainers",
    description="Single-step diffusion depth and normals, metric-aligned, as a ROS 2 node",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "depth-ft-ros = depth_ft_ros.cli:main",
            "depth_ft_node = depth_ft_ros.node.entry:run_node",
        ],
    },
)
